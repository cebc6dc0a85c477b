"""The main job end to end at smoke size: every stage runs, is skipped when complete, and the
report is complete with metrics computed on captions the trained model really generated."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmtok.demo.pipeline import STAGES, DemoConfig, DemoPipeline


@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage_and_writes_a_complete_report(tmp_path, capsys, monkeypatch):
    cfg = DemoConfig(
        out=str(tmp_path / "demo"), size="smoke", clips_per_piece=2,
        codec="fit", codec_preset="tiny", codec_minutes=0.1,
        config="configs/tiny.yaml", train_minutes=5.0, generate_seconds=1.0,
        overrides=["train.max_steps=60", "data.seq_len=512", "model.max_seq_len=512", "train.eval_interval=0",
                   "data.workers=0"],
    )
    pipe = DemoPipeline(cfg)
    pipe.run()
    out = tmp_path / "demo"

    for stage in STAGES:  # every stage recorded as complete
        assert (out / ".stages" / f"{stage}.json").exists(), stage
    for split in ("train", "valid", "test"):
        assert (out / "corpus" / f"{split}.jsonl").read_text().strip()
    assert (out / "train" / "checkpoints").is_dir()

    results = json.loads((out / "report" / "results.json").read_text())
    for metric in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        assert np.isfinite(results["caption_metrics"][metric]), metric
    for attr in ("instrument", "tempo_class", "mode", "meter"):
        a = results["attributes"][attr]
        assert 0.0 <= a["accuracy"] <= 1.0 and 0.0 < a["majority_baseline"] <= 1.0
    test_items = (out / "corpus" / "test.jsonl").read_text().strip().splitlines()
    assert len(results["samples"]) == len(test_items)
    captions = [s["caption"] for s in results["samples"]]
    assert any(c.strip() for c in captions), "the trained model generated no caption text at all"
    assert results["perplexity"]["text"]["tokens"] > 0 and results["perplexity"]["audio"]["tokens"] > 0

    md = (out / "report" / "results.md").read_text()
    assert "loss_curves.png" in md and "BLEU-4" in md and "majority" in md
    assert "Corpus size `smoke` (clips per piece 2, captions per clip 4)" in md
    clip_ids = [json.loads(line)["id"] for line in test_items]
    assert {i.rsplit("_", 1)[1] for i in clip_ids} == {"0", "1"}  # --clips-per-piece reached the corpus
    assert all(len(json.loads(line)["references"]) == 3 for line in test_items)  # 4 wordings by default
    png = (out / "report" / "loss_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    wav, sr = sf.read(out / "report" / "generated.wav")
    assert abs(len(wav) / sr - cfg.generate_seconds) < 1.0 / sr + 1e-9
    assert np.abs(wav).max() > 0
    printed = capsys.readouterr().out
    assert "caption metrics" in printed and "sample captions" in printed

    # Re-running skips every complete stage; changing a stage's parameters re-runs it and what follows.
    pipe.run()
    rerun = capsys.readouterr().out
    for s in STAGES:
        assert f"[demo] {s}: already complete, skipped" in rerun, s
    changed = DemoPipeline(DemoConfig(**{**cfg.__dict__, "generate_prompt": "a fast organ piece"}))
    assert again_stage_done(changed, "eval") and not again_stage_done(changed, "report")

    # A moved run directory, reached from another working directory, still finds its fitted codec.
    moved = tmp_path / "elsewhere" / "demo"
    moved.parent.mkdir()
    out.rename(moved)
    config = str(Path(cfg.config).resolve())  # configs/ is relative to the repository
    monkeypatch.chdir(moved.parent)
    shutil.rmtree(moved / "tokenizer")
    DemoPipeline(DemoConfig(**{**cfg.__dict__, "out": "demo", "config": config})).run(stages=["tokenizer"], force=True)
    assert (moved / "tokenizer" / "codec" / "codec.json").is_file()  # the fitted codec, copied in


def again_stage_done(pipe, name):
    from mmtok.demo.pipeline import Stage

    return Stage(pipe.cfg, name, pipe.stage_params(name)).done()


def test_training_schedule_is_sized_to_the_time_budget_and_an_explicit_step_count_wins():
    from mmtok.config import load_config

    def run_config(**kw):
        pipe = DemoPipeline(DemoConfig(**kw))
        return load_config(pipe.cfg.config, pipe.train_overrides())

    cfg = run_config(train_minutes=10, steps_per_minute=66.0)
    assert cfg.train.max_steps == 660 and cfg.train.max_minutes == 10  # cosine ends when the budget does
    assert run_config(train_minutes=40, steps_per_minute=66.0).train.max_steps == 2640  # longer budget, longer schedule
    assert run_config(train_minutes=10, steps_per_minute=66.0, overrides=["train.max_steps=7"]).train.max_steps == 7
    as_configured = load_config(DemoConfig().config).train.max_steps
    assert run_config(train_minutes=10, steps_per_minute=0).train.max_steps == as_configured


def test_default_schedule_rate_follows_the_training_precision():
    """The default rate is demo_small's measured one at the precision training will run in: bf16
    where this CPU has it in hardware (AVX512-BF16 / AMX), else fp32; an explicit precision wins."""
    import torch

    from mmtok.demo.pipeline import STEPS_PER_MINUTE
    from mmtok.training.parallelize import autocast_dtype, cpu_has_native_bf16

    def rate(*overrides):
        return DemoPipeline(DemoConfig(train_minutes=10, overrides=list(overrides))).steps_per_minute()

    assert rate("train.precision=fp32", "train.device=cpu") == STEPS_PER_MINUTE["fp32"]
    assert rate("train.precision=bf16", "train.device=cpu") == STEPS_PER_MINUTE["bf16"]
    auto = "bf16" if cpu_has_native_bf16() else "fp32"
    assert autocast_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if auto == "bf16" else None)
    assert rate("train.device=cpu") == STEPS_PER_MINUTE[auto]
    assert STEPS_PER_MINUTE["bf16"] > STEPS_PER_MINUTE["fp32"]


def test_custom_corpus_size_reaches_the_corpus_stage_and_its_fingerprint():
    default = DemoPipeline(DemoConfig(captions_per_clip=1))
    assert default.stage_params("corpus")["own"] == {"size": "default", "seed": 0}  # older runs stay complete
    more = DemoPipeline(DemoConfig(clips_per_piece=8, captions_per_clip=1))
    assert more.stage_params("corpus")["own"] == {"size": "default", "seed": 0, "clips_per_piece": 8}
    # Everything made from the corpus is stale when it changes.
    assert more.stage_params("train")["upstream"][0] != default.stage_params("train")["upstream"][0]


def test_captions_per_clip_reach_the_corpus_stage_from_the_cli():
    from mmtok.cli import build_parser
    from mmtok.cli.demo import demo_config

    args = build_parser().parse_args(["demo", "--out", "runs/x", "--captions-per-clip", "2"])
    pipe = DemoPipeline(demo_config(args))
    assert pipe.stage_params("corpus")["own"] == {"size": "default", "seed": 0, "captions_per_clip": 2}
    default = build_parser().parse_args(["demo"])
    assert DemoPipeline(demo_config(default)).stage_params("corpus")["own"]["captions_per_clip"] == 4
