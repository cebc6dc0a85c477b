"""The main job end to end at smoke size: every stage runs, is skipped when complete, and the
report is complete with metrics computed on captions the trained model really generated."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from mmtok.demo.corpus import CORPUS_VERSION
from mmtok.demo.pipeline import STAGES, DemoConfig, DemoPipeline


@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage_and_writes_a_complete_report(tmp_path, capsys, monkeypatch):
    cfg = DemoConfig(
        out=str(tmp_path / "demo"), size="smoke", clips_per_piece=2, ood_pieces=2,
        codec="fit", codec_preset="tiny", codec_minutes=0.1,
        config="tiny", train_minutes=5.0, generate_seconds=1.0, tasks=True,
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

    conditions = results["generalization"]
    assert len(conditions) == 4 and all(c["n"] > 0 for c in conditions.values())  # test split + 3 levels
    for c in conditions.values():
        assert 0.0 <= c["attributes"]["instrument"]["accuracy"] <= 1.0
    md = (out / "report" / "results.md").read_text()
    assert "loss_curves.png" in md and "BLEU-4" in md and "majority" in md and "held-out collections, 30 dB" in md
    assert "Corpus size `smoke` (clips per piece 2, ood pieces 2, captions per clip 4)" in md
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

    # The other tasks: trained from the mixed train shards, evaluated on the test pieces, reported.
    import webdataset as wds

    from mmtok.data.stream import resolve_shards

    trained = {json.loads(s["json"]).get("task", "caption") for s in
               wds.WebDataset(resolve_shards(out / "shards" / "shards.jsonl#train"), shardshuffle=False)}
    assert trained == {"caption", "qa", "segments", "playlist"}
    tasks = results["tasks"]
    assert set(tasks) == {"qa", "segments", "playlist", "retrieval", "music"}
    assert tasks["qa"]["n_questions"] == 7 * len(test_items)  # one per fact and a description, every test clip
    assert 0.0 <= tasks["qa"]["attributes_by_type"]["family"]["accuracy"] <= 1.0
    assert set(tasks["qa"]["on_topic_by_type"]) == set(tasks["qa"]["attributes_by_type"])
    assert tasks["segments"]["items"] > 0 and tasks["segments"]["baseline"]["sections"] >= 2
    assert set(tasks["segments"]["recaptioned"]) == {"section_caption_metrics", "section_attributes"}
    t2a = tasks["retrieval"]["directions"]["text2audio"]
    assert t2a["metrics"]["candidates"] == len(test_items) and t2a["random"]["R@1"] == pytest.approx(1 / len(test_items))
    assert tasks["playlist"]["n_playlists"] > 0 and "set_attributes" in tasks["playlist"]
    assert "# Other tasks" in md and "Question answering" in md and "Trivial segmentation" in md and "Examples" in md

    # Re-running skips every complete stage; changing a stage's parameters re-runs it and what follows.
    pipe.run()
    rerun = capsys.readouterr().out
    for s in STAGES:
        assert f"[demo] {s}: already complete, skipped" in rerun, s
    changed = DemoPipeline(DemoConfig(**{**cfg.__dict__, "generate_prompt": "a fast organ piece"}))
    assert again_stage_done(changed, "eval") and not again_stage_done(changed, "report")
    captions_only = DemoPipeline(DemoConfig(**{**cfg.__dict__, "tasks": False}))  # --no-tasks: the codec stays
    assert again_stage_done(captions_only, "codec") and not again_stage_done(captions_only, "tasks")

    # A moved run directory, reached from another working directory, still finds its fitted codec.
    moved = tmp_path / "elsewhere" / "demo"
    moved.parent.mkdir()
    out.rename(moved)
    monkeypatch.chdir(moved.parent)
    shutil.rmtree(moved / "tokenizer")
    DemoPipeline(DemoConfig(**{**cfg.__dict__, "out": "demo"})).run(stages=["tokenizer"], force=True)
    assert (moved / "tokenizer" / "codec" / "codec.json").is_file()  # the fitted codec, copied in


def again_stage_done(pipe, name):
    from mmtok.demo.pipeline import Stage

    return Stage(pipe.cfg, name, pipe.stage_params(name)).done()


def test_training_schedule_comes_from_the_config_the_step_count_or_the_rate():
    from mmtok.config import load_config

    def run_config(**kw):
        pipe = DemoPipeline(DemoConfig(**kw))
        return load_config(pipe.cfg.config, pipe.train_overrides())

    as_configured = load_config(DemoConfig().config).train.max_steps
    assert as_configured == 2550  # demo_small's schedule, the one the results were measured with
    cfg = run_config(train_minutes=10)
    assert cfg.train.max_steps == as_configured and cfg.train.max_minutes == 10  # the minutes only cap it
    assert run_config(train_steps=700).train.max_steps == 700
    assert run_config(train_minutes=10, steps_per_minute=66.0).train.max_steps == 660
    assert run_config(train_minutes=40, steps_per_minute=66.0).train.max_steps == 2640  # longer budget, longer schedule
    assert run_config(train_minutes=10, steps_per_minute=66.0, overrides=["train.max_steps=7"]).train.max_steps == 7


def test_the_whole_configuration_is_checked_before_the_first_stage(tmp_path, monkeypatch):
    from mmtok.config import ConfigError

    monkeypatch.chdir(tmp_path)  # the preset is package data: found from any working directory
    DemoPipeline(DemoConfig(out="demo")).validate()
    for bad, match in [(dict(overrides=["model.dimm=3"]), "model.dimm"), (dict(config="nope"), "nope"),
                       (dict(overrides=["data.seq_len=4096"]), "model.max_seq_len"),
                       (dict(codec_preset="huge"), "huge"), (dict(size="medium"), "medium")]:
        with pytest.raises((ConfigError, ValueError), match=match):
            DemoPipeline(DemoConfig(out="demo", **bad)).run()
    assert not (tmp_path / "demo").exists()  # nothing was started


def test_custom_corpus_size_reaches_the_corpus_stage_and_its_fingerprint():
    default = DemoPipeline(DemoConfig(captions_per_clip=1))
    v = CORPUS_VERSION  # a generator that makes other clips from the same size and seed makes old corpora stale
    assert default.stage_params("corpus")["own"] == {"size": "default", "seed": 0, "version": v}
    more = DemoPipeline(DemoConfig(clips_per_piece=8, captions_per_clip=1))
    assert more.stage_params("corpus")["own"] == {"size": "default", "seed": 0, "version": v, "clips_per_piece": 8}
    # Everything made from the corpus is stale when it changes.
    assert more.stage_params("train")["upstream"][0] != default.stage_params("train")["upstream"][0]


def test_captions_per_clip_reach_the_corpus_stage_from_the_cli():
    from mmtok.cli import build_parser
    from mmtok.cli.demo import demo_config

    args = build_parser().parse_args(["demo", "--out", "runs/x", "--captions-per-clip", "2"])
    pipe = DemoPipeline(demo_config(args))
    assert pipe.stage_params("corpus")["own"] == {"size": "default", "seed": 0, "version": CORPUS_VERSION,
                                                  "captions_per_clip": 2}
    default = build_parser().parse_args(["demo"])
    assert DemoPipeline(demo_config(default)).stage_params("corpus")["own"]["captions_per_clip"] == 4


def test_tasks_are_on_by_default_from_the_cli_and_never_refit_the_codec():
    from mmtok.cli import build_parser
    from mmtok.cli.demo import demo_config

    on, off = (demo_config(build_parser().parse_args(["demo", *flag])) for flag in ([], ["--no-tasks"]))
    assert (on.tasks, off.tasks) == (True, False)
    assert demo_config(build_parser().parse_args(["demo", "--no-tasks", "--tasks"])).tasks is True
    off, on = DemoPipeline(off), DemoPipeline(on)
    assert off.stage_params("codec") == on.stage_params("codec")
    assert off.stage_params("tokenizer") != on.stage_params("tokenizer")


def test_new_task_data_rebuilds_the_stages_after_it_only_in_task_runs(monkeypatch):
    import mmtok.demo.pipeline as pipeline

    off, on = DemoPipeline(DemoConfig(tasks=False)), DemoPipeline(DemoConfig(tasks=True))
    before = {(p.cfg.tasks, s): p.stage_params(s) for p in (off, on) for s in STAGES}
    monkeypatch.setattr(pipeline, "TASK_DATA_VERSION", pipeline.TASK_DATA_VERSION + 1)
    for s in STAGES:
        assert off.stage_params(s) == before[(False, s)]  # captions-only runs keep every stage
        changed = on.stage_params(s) != before[(True, s)]
        assert changed == (STAGES.index(s) >= STAGES.index("tasks")), s  # corpus and codec are kept
