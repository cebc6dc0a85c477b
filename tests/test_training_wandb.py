"""wandb: a real offline run holds the logged metrics, the config and the sample-caption table;
an online run without an API key falls back to offline instead of failing."""

import json
import logging
import struct
from pathlib import Path

import pytest

from mmtok.config import load_config
from mmtok.training.evals import default_evals
from mmtok.training.loop import train
from mmtok.training.wandb_log import WandbConfig, WandbLogger
from tests.fixtures.training import TINY, read_metrics, tiny_overrides

BLOCK = 32768  # wandb's .wandb files are a LevelDB-style log: 32 KiB blocks of framed chunks


def wandb_records(path: Path):
    """Every protobuf Record in a .wandb file (wandb 0.31 ships no public reader).

    Layout: 7-byte header (':W&B', magic 0xBEE1, version); then chunks of
    [crc32 u32][length u16][type u8] + payload, never crossing a block boundary; type 1 = a
    whole record, 2/3/4 = first/middle/last piece of one."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1
    pos, pieces = 7, []
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += room
            continue
        pieces.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record


def item_key(item) -> str:
    return "/".join(item.nested_key) or item.key


@pytest.fixture(scope="module")
def offline_run(tokenizer_dir, train_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("wandb_run")
    cfg = load_config(TINY, tiny_overrides(
        tokenizer_dir, train_shards, out, "train.max_steps=4", "wandb.mode=offline", "train.eval_interval=2",
        f"data.valid_shards={train_shards / 'shards.jsonl'}#valid", "train.eval_captions=2", "train.eval_sequences=4",
    ))  # fmt: skip
    train(cfg, eval_callbacks=default_evals(cfg))
    return out


def test_offline_run_files_hold_the_logged_metrics(offline_run, tokenizer):
    runs = list((offline_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (wandb_file,) = runs[0].glob("run-*.wandb")
    records = list(wandb_records(wandb_file))
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {item_key(i): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(r.history.step.num, {}).update(items)
    metrics = read_metrics(offline_run)
    for step in range(1, 5):  # log_interval=1: every step, values exactly as in metrics.jsonl
        for key in ("loss", "loss/text", "loss/audio", "lr", "grad_norm", "perf/tokens_per_s", "perf/mfu"):
            assert history[step][key] == pytest.approx(metrics[step][key], rel=1e-12), (step, key)
    # Evaluation at steps 2 and 4: held-out loss and the sample-caption table (a table file).
    evals = [json.loads(line) for line in (offline_run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4]
    for e in evals:
        assert history[e["step"]]["val/loss"] == pytest.approx(e["val/loss"])
        prefix = "samples/captions/"  # a logged Table is a reference to a JSON file in files/
        table = {k[len(prefix):]: v for k, v in history[e["step"]].items() if k.startswith(prefix)}
        assert table["_type"] == "table-file" and table["nrows"] == 2 and table["ncols"] == 4
        content = json.loads((runs[0] / "files" / table["path"]).read_text())
        assert content["columns"] == ["step", "clip", "reference", "generated"]
        assert [row[0] for row in content["data"]] == [e["step"]] * 2
        assert all(isinstance(row[3], str) and row[2] for row in content["data"])  # real references
    # The config went along with the run.
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in run_record.config.update}
    assert config["train"]["max_steps"] == 4
    assert config["model"]["dim"] == 64 and config["model"]["vocab_size"] == len(tokenizer)


def test_online_without_key_falls_back_to_offline(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key either
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    with caplog.at_level(logging.WARNING, logger="mmtok.training.wandb_log"):
        logger = WandbLogger(WandbConfig(mode="online", init_timeout=10), {"a": 1}, tmp_path / "run")
    assert logger.mode == "offline"
    assert any("logging offline" in r.message for r in caplog.records)
    logger.log({"loss": 1.5}, step=1)
    logger.finish()
    (wandb_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    logged = [i for r in wandb_records(wandb_file) if r.WhichOneof("record_type") == "history" for i in r.history.item]
    assert any(item_key(i) == "loss" and json.loads(i.value_json) == 1.5 for i in logged)
