"""The demo's report directory: results table (Markdown + JSON), loss curves, a generated sample."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mmtok.atomic import atomic_path, write_text_atomic

N_SAMPLE_CAPTIONS = 8  # caption/reference pairs shown in the printed table


def read_metrics(path: Path) -> list[dict]:
    """The training loop's metrics.jsonl (one record per logged step)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training metrics (did the train stage run?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curves(records: list[dict], out: Path) -> Path:
    """Overall, text-target and audio-target training loss against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on clusters and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for key, label in (("loss", "all targets"), ("loss/text", "text targets"), ("loss/audio", "audio targets")):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("mmtok demo: training loss by target modality")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out


def results_markdown(eval_report: dict, generated: dict, config: dict, corpus_knobs: dict) -> str:
    from mmtok.eval.report import markdown_report

    custom = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in corpus_knobs.items())
    lines = [
        "# mmtok demo results",
        "",
        f"Corpus size `{config['size']}`{f' ({custom})' if custom else ''}, training preset `{config['config']}`, "
        f"budget {config['train_minutes']} min. Test clips come from pieces never seen in training.",
        "",
        "![training loss](loss_curves.png)",
        "",
        f"Generated from the prompt \"{generated['prompt']}\": [generated.wav](generated.wav) "
        f"({generated['seconds']:.2f} s at {generated['sample_rate']} Hz).",
        "",
    ]
    body = markdown_report(eval_report).splitlines()
    return "\n".join(lines + body[1:]) + "\n"  # our own title replaces the eval report's


def summary_table(eval_report: dict) -> str:
    """The plain-text table printed at the end of `mmtok demo`."""
    rows = ["", "caption metrics:"]
    rows += [f"  {k:<10} {v:.4f}" for k, v in eval_report.get("caption_metrics", {}).items()]
    if eval_report.get("attributes"):
        rows += ["", f"  {'attribute':<12} {'accuracy':>8} {'majority':>8}"]
        for name, a in eval_report["attributes"].items():
            rows.append(f"  {name:<12} {a['accuracy']:>8.3f} {a['majority_baseline']:>8.3f}")
    rows += ["", "sample captions (reference -> model):"]
    for s in eval_report.get("samples", [])[:N_SAMPLE_CAPTIONS]:
        rows += [f"  ref: {s['reference']}", f"  out: {s['caption']}", ""]
    return "\n".join(rows)


def write_demo_report(pipeline) -> dict:
    from mmtok.generate.music import generate_music, write_wav
    from mmtok.training.checkpoint import load_for_inference

    cfg = pipeline.cfg
    out = pipeline.path("report")
    out.mkdir(parents=True, exist_ok=True)
    eval_report = json.loads(pipeline.path("eval", "eval.json").read_text())
    plot_loss_curves(read_metrics(pipeline.path("train", "metrics.jsonl")), out / "loss_curves.png")

    model, _, tokenizer = load_for_inference(pipeline.path("train"))
    wav, sr = generate_music(model, tokenizer, cfg.generate_prompt, cfg.generate_seconds)
    write_wav(out / "generated.wav", wav, sr)
    generated = {"prompt": cfg.generate_prompt, "seconds": wav.shape[-1] / sr, "sample_rate": sr}

    config = asdict(cfg)
    results = {"demo_config": config, "generated": generated, **eval_report}
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_text_atomic(out / "results.md", results_markdown(eval_report, generated, config, pipeline.corpus_knobs()))
    print(summary_table(eval_report), flush=True)
    print(f"\n[demo] report: {out / 'results.md'}", flush=True)
    return {"report": str(out), "generated_seconds": generated["seconds"]}
