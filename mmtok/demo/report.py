"""The demo's report directory: results table (Markdown + JSON), loss curves, a generated sample."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mmtok.atomic import atomic_path, write_text_atomic
from mmtok.checkpoint import load_for_inference
from mmtok.demo.corpus import OOD, ood_conditions
from mmtok.eval.report import markdown_report
from mmtok.eval.tasks import markdown_tasks
from mmtok.generate.music import generate_music, write_wav

N_SAMPLE_CAPTIONS = 8  # caption/reference pairs shown in the printed table


# (training key in metrics.jsonl, held-out key in eval.jsonl, label), one colour each
LOSS_CURVES = (
    ("loss", "val/loss", "all targets"),
    ("loss/text", "val/loss_text", "text targets"),
    ("loss/audio", "val/loss_audio", "audio targets"),
)
SMOOTHING = 0.95  # EMA weight of the training curves: each step's loss swings with its batch's template mix


def read_metrics(path: Path, required: bool = True) -> list[dict]:
    """One of the training loop's JSONL logs (metrics.jsonl per logged step, eval.jsonl per held-out
    evaluation) in step order. A run resumed from a checkpoint logs the steps after that checkpoint
    again: the latest record of a step wins. An absent optional log (no held-out evaluation ran)
    reads as no records."""
    if not path.exists():
        if not required:
            return []
        raise FileNotFoundError(f"{path}: no training metrics (did the train stage run?)")
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def smoothed(values, weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, debiased as TensorBoard's smoothing is (the first points are
    not pulled towards 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def loss_curve_series(records: list[dict], held_out: list[dict]) -> dict[str, dict[str, tuple]]:
    """label -> {"train": (steps, losses), "held_out": (steps, losses)}, each part present only
    where the logs have it."""
    series = {}
    for train_key, val_key, label in LOSS_CURVES:
        parts = {}
        if points := [(r["step"], r[train_key]) for r in records if r.get(train_key) is not None]:
            parts["train"] = tuple(zip(*points))
        if points := [(r["step"], r[val_key]) for r in held_out if r.get(val_key) is not None]:
            parts["held_out"] = tuple(zip(*points))
        if parts:
            series[label] = parts
    return series


def plot_loss_curves(records: list[dict], held_out: list[dict], out: Path) -> Path:
    """Training loss (raw, faint; smoothed, solid) and held-out loss (dashed, one point per
    evaluation) against step, overall and by target modality, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on clusters and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for (label, parts), color in zip(loss_curve_series(records, held_out).items(), ("C0", "C1", "C2")):
        if "train" in parts:
            steps, losses = parts["train"]
            ax.plot(steps, losses, color=color, alpha=0.2, linewidth=0.7)
            ax.plot(steps, smoothed(losses), color=color, label=f"{label}, train")
        if "held_out" in parts:
            ax.plot(*parts["held_out"], color=color, linestyle="--", marker="o", markersize=3,
                    label=f"{label}, held out")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("mmtok demo: loss by target modality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out


def results_markdown(eval_report: dict, generated: dict, config: dict, corpus_knobs: dict,
                     generalization: str = "") -> str:
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
    if generalization:
        lines += ["## Generalization: attribute accuracy (majority baseline) by condition", "",
                  "Held-out collections and composers were never trained on; their clips are written at "
                  "three levels (dBFS RMS).", "", generalization, ""]
    body = markdown_report(eval_report).splitlines()
    return "\n".join(lines + body[1:]) + "\n"  # our own title replaces the eval report's


GENERALIZATION_ATTRIBUTES = ("instrument", "instrument_name", "tempo_class", "mode", "meter")


def generalization_table(conditions: dict[str, dict]) -> str:
    """Markdown: attribute accuracy (majority baseline) per condition, side by side.

    `conditions`: label -> eval report, e.g. the in-distribution test split and the held-out
    collections at each level."""
    header = "| condition | clips | " + " | ".join(GENERALIZATION_ATTRIBUTES) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(GENERALIZATION_ATTRIBUTES)]
    for label, report in conditions.items():
        attrs = report.get("attributes", {})
        cells = [f"{attrs[a]['accuracy']:.3f} ({attrs[a]['majority_baseline']:.3f})" if a in attrs else "-"
                 for a in GENERALIZATION_ATTRIBUTES]
        lines.append(f"| {label} | {report.get('n_captions', 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_conditions(eval_dir: Path) -> dict[str, dict]:
    """The eval reports of the demo's conditions that exist: test split, then ood_m30 .. ood_m10."""
    out = {"test split (unseen pieces)": json.loads((eval_dir / "eval.json").read_text())}
    for _, suffix in ood_conditions():
        path = eval_dir / f"{OOD}{suffix}.json"
        if path.is_file():
            out[f"held-out collections, {suffix[2:]} dB below full scale"] = json.loads(path.read_text())
    return out


def task_headlines(tasks: dict) -> dict:
    """The measures of the task report (eval/tasks.json) without its per-item lists."""
    keep = {"qa": ("n_items", "n_questions", "exact_match", "exact_match_by_type", "attributes_by_type",
                   "on_topic_by_type", "answer_metrics"),
            "segments": ("items", "sections_right", "boundary_mae_s", "boundary_mae_s_count_right", "unparsed",
                         "baseline", "section_attributes", "section_caption_metrics", "recaptioned"),
            "playlist": ("n_playlists", "caption_metrics", "set_attributes"),
            "retrieval": ("seconds_per_clip",),
            "music": ("n", "seconds", "round_trip_attributes")}
    out = {part: {k: tasks[part][k] for k in names if k in tasks[part]} for part, names in keep.items() if part in tasks}
    if "directions" in tasks.get("retrieval", {}):
        out["retrieval"]["directions"] = {d: {"metrics": r["metrics"], "random": r["random"]}
                                          for d, r in tasks["retrieval"]["directions"].items()}
    return out


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
    cfg = pipeline.cfg
    out = pipeline.path("report")
    out.mkdir(parents=True, exist_ok=True)
    conditions = read_conditions(pipeline.path("eval"))
    eval_report = next(iter(conditions.values()))
    plot_loss_curves(read_metrics(pipeline.path("train", "metrics.jsonl")),
                     read_metrics(pipeline.path("train", "eval.jsonl"), required=False), out / "loss_curves.png")

    model, _, tokenizer = load_for_inference(pipeline.path("train"))
    wav, sr = generate_music(model, tokenizer, cfg.generate_prompt, cfg.generate_seconds)
    write_wav(out / "generated.wav", wav, sr)
    generated = {"prompt": cfg.generate_prompt, "seconds": wav.shape[-1] / sr, "sample_rate": sr}

    config = asdict(cfg)
    generalization = {label: {"n": r.get("n_captions"), "attributes": r.get("attributes", {}),
                              "caption_metrics": r.get("caption_metrics", {})} for label, r in conditions.items()}
    results = {"demo_config": config, "generated": generated, **eval_report, "generalization": generalization}
    markdown = results_markdown(eval_report, generated, config, pipeline.corpus_knobs(), generalization_table(conditions))
    tasks_path = pipeline.path("eval", "tasks.json")
    if pipeline.cfg.tasks and tasks_path.is_file():  # the demo trained the other tasks too
        tasks = json.loads(tasks_path.read_text())
        results["tasks"] = task_headlines(tasks)
        markdown += "\n# Other tasks (unseen test pieces)\n\n" + "\n".join(markdown_tasks(tasks).splitlines()[1:]) + "\n"
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    write_text_atomic(out / "results.md", markdown)
    table = generalization_table(conditions)
    print(summary_table(eval_report) + "\nattribute accuracy (majority baseline) by condition:\n" + table, flush=True)
    print(f"\n[demo] report: {out / 'results.md'}", flush=True)
    return {"report": str(out), "generated_seconds": generated["seconds"]}
