"""The demo report's loss curves: train and held-out series read from a real training run's logs."""

import json

import pytest

from mmtok.config import load_config
from mmtok.demo.report import loss_curve_series, plot_loss_curves, read_metrics, smoothed
from mmtok.training.evals import default_evals
from mmtok.training.loop import train
from tests.fixtures.training import TINY, tiny_overrides


def test_smoothed_is_a_debiased_moving_average():
    assert smoothed([3.0] * 5, weight=0.9) == pytest.approx([3.0] * 5)  # not pulled towards 0 at the start
    assert smoothed([1.0, 0.0], weight=0.5) == pytest.approx([1.0, 0.25 / 0.75])
    assert smoothed([]) == []


def test_loss_curves_hold_the_training_and_held_out_losses(tokenizer_dir, train_shards, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(TINY, tiny_overrides(
        tokenizer_dir, train_shards, out, "train.max_steps=4", "train.eval_interval=2", "train.eval_captions=0",
        f"data.valid_shards={train_shards / 'shards.jsonl'}#valid", "train.eval_sequences=4",
    ))  # fmt: skip
    train(cfg, eval_callbacks=default_evals(cfg))
    records = read_metrics(out / "metrics.jsonl")
    held_out = read_metrics(out / "eval.jsonl", required=False)
    series = loss_curve_series(records, held_out)

    assert set(series) == {"all targets", "text targets", "audio targets"}
    steps, raw = series["all targets"]["train"]
    assert steps == (1, 2, 3, 4) and raw == tuple(r["loss"] for r in records)
    held_out_keys = {"all targets": "val/loss", "text targets": "val/loss_text", "audio targets": "val/loss_audio"}
    for label, key in held_out_keys.items():
        assert series[label]["held_out"] == ((2, 4), tuple(e[key] for e in held_out)), label
    png = plot_loss_curves(records, held_out, tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # A run without held-out evaluation has no eval.jsonl: train curves only. metrics.jsonl is required.
    assert read_metrics(out / "absent.jsonl", required=False) == []
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        read_metrics(out / "absent.jsonl")
    assert all(set(parts) == {"train"} for parts in loss_curve_series(records, []).values())

    # A resumed run logs the steps after its checkpoint again: the latest record of a step wins.
    relogged = [dict(r, loss=r["loss"] + 1.0) for r in records[2:]]
    with open(out / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in relogged)
    assert read_metrics(out / "metrics.jsonl") == records[:2] + relogged
