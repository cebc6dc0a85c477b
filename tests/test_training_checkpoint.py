"""Checkpoint safety: a kill during a sharded save, checksums catching a flipped byte in every
kind of file, consolidation, corrupt or foreign checkpoints giving clear errors."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmtok import checkpoint as ckpt
from mmtok.cli import main
from mmtok.config import load_config
from mmtok.tokenizer.layout import LayoutMismatchError
from mmtok.tokenizer.multimodal import MultimodalTokenizer
from mmtok.training.loop import train
from tests.fixtures.training import REPO, TINY, subprocess_env, tiny_overrides

# Saves step 1 of an ~8M-parameter model (DCP shards, not consolidated), then step 2 with AdamW
# moments too (~100 MB: the test kills the process while DCP is busy writing that).
SAVER = """
import sys, torch
from mmtok.config import load_config
from mmtok.tokenizer.multimodal import MultimodalTokenizer
from mmtok import checkpoint as ckpt
torch.manual_seed(0)
cfg = load_config(sys.argv[1], sys.argv[3:])
tok = MultimodalTokenizer.from_pretrained(cfg.tokenizer)
cfg.set_vocab_size(len(tok))
model = cfg.model.build()
opt = cfg.optim.build(model)
sched = cfg.schedule.build(opt, 10)
state = lambda: {"data": {"batches": 0}, "layout_hash": tok.layout.hash}
ckpt.save_checkpoint(sys.argv[2], 1, model, opt, sched, state(), cfg.to_yaml(), cfg.tokenizer, 3)
print("saved 1", flush=True)
for p in model.parameters():
    p.grad = torch.ones_like(p)
opt.step()  # optimizer moments make step 2's write several times larger
print("saving 2", flush=True)
ckpt.save_checkpoint(sys.argv[2], 2, model, opt, sched, state(), cfg.to_yaml(), cfg.tokenizer, 3)
print("saved 2", flush=True)
"""


def test_kill_during_checkpoint_write_leaves_previous_loadable(tokenizer_dir, train_shards, tmp_path):
    run = tmp_path / "run"
    big = ["model.dim=384", "model.n_layers=4", "model.n_heads=6", "model.n_kv_heads=6"]
    argv = [sys.executable, "-c", SAVER, str(TINY), str(run), *tiny_overrides(tokenizer_dir, train_shards, run), *big]
    proc = subprocess.Popen(argv, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saved 1", proc.stderr.read()[-3000:]
    assert proc.stdout.readline().strip() == "saving 2"
    root = run / "checkpoints"
    deadline = time.monotonic() + 60
    while not (root / ".tmp-step_000002" / "dcp").is_dir():  # all ranks write into it from now on
        assert proc.poll() is None, "the save finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (root / ".tmp-step_000002").is_dir(), "the kill should have landed mid-write"
    assert not (root / ".tmp-step_000002" / "checksums.json").exists()
    assert not (root / "step_000002").exists()  # nothing half-written under the final name
    step1 = ckpt.latest_checkpoint(run)
    assert step1.name == "step_000001"
    # The previous checkpoint is intact: it verifies, resumes, and consolidates for inference.
    assert ckpt.verify(step1) == []
    cfg = load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, run, *big))
    cfg.model = cfg.model.for_vocab(len(MultimodalTokenizer.from_pretrained(tokenizer_dir)))
    model = cfg.model.build()
    opt = cfg.optim.build(model)
    state = ckpt.load_checkpoint(step1, model, opt, cfg.schedule.build(opt, 10))
    assert state["step"] == 1 and state["data"] == {"batches": 0}
    with pytest.raises(ckpt.CheckpointError, match="mmtok checkpoint consolidate"):
        ckpt.load_for_inference(run)
    assert main(["checkpoint", "consolidate", str(run)]) == 0
    loaded, cfg2, tok = ckpt.load_for_inference(run)
    assert cfg2.model.dim == 384 and len(tok) == cfg2.model.vocab_size
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    # The next run start cleans the partial directory.
    assert [p.name for p in ckpt.remove_partial_checkpoints(run)] == [".tmp-step_000002"]


@pytest.fixture(scope="module")
def short_run(tokenizer_dir, train_shards, tmp_path_factory):
    """Checkpoints at steps 1 (sharded only) and 2 (the last: consolidated too)."""
    out = tmp_path_factory.mktemp("short")
    train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, out, "train.max_steps=2",
                                           "train.checkpoint_interval=1")))  # fmt: skip
    return out


def flip_byte(path):
    """Flip the lowest bit of a byte in the middle; in text files, of a digit (which stays a digit,
    so the file still parses: only the checksum can tell)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    if path.suffix in (".json", ".yaml"):
        i = next(j for j in range(i, len(data)) if chr(data[j]).isdigit())
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


KINDS = ["dcp/__0_0.distcp", "dcp/.metadata", "loader.pt", "scheduler.pt", "model.safetensors", "config.yaml",
         "train_state.json", "tokenizer/layout.json"]


@pytest.mark.parametrize("name", KINDS)
def test_a_flipped_byte_in_any_file_is_caught(short_run, tokenizer_dir, train_shards, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    step = ckpt.latest_checkpoint(run)
    assert ckpt.verify(step) == []
    target = step / name
    if target.is_file() and target.stat().st_nlink > 1:  # tokenizer files are hard links: break the link
        target.write_bytes(target.read_bytes())
    flip_byte(target)
    errors = ckpt.verify(step)
    assert len(errors) == 1 and name in errors[0] and "checksum mismatch" in errors[0]
    assert main(["checkpoint", "verify", str(run)]) == 2
    if name in ("model.safetensors", "config.yaml", "tokenizer/layout.json"):  # what inference reads
        with pytest.raises(ckpt.CheckpointError, match=name.replace(".", r"\.")):
            ckpt.load_for_inference(run)
        if name == "model.safetensors":
            ckpt.load_for_inference(run, verify=False)  # explicitly unchecked: loads
    if name != "model.safetensors":  # resuming reads everything else
        cfg = load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, run, "train.max_steps=3"))
        with pytest.raises(ckpt.CheckpointError, match=f"{name}: checksum mismatch"):
            train(cfg)


def test_a_train_state_that_no_longer_parses_is_reported_as_corrupt(short_run, tokenizer_dir, train_shards, tmp_path):
    """Resuming verifies the files before it parses any of them."""
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    state = ckpt.latest_checkpoint(run) / "train_state.json"
    data = bytearray(state.read_bytes())
    data[0] = ord("x")  # not JSON any more
    state.write_bytes(bytes(data))
    cfg = load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, run, "train.max_steps=3"))
    with pytest.raises(ckpt.CheckpointError, match="train_state.json: checksum mismatch"):
        train(cfg)


def test_consolidate_cli_round_trip(short_run, tmp_path, capsys):
    """An intermediate (sharded-only) checkpoint consolidates to the weights the run had at that
    step: the same tensors DCP restores into a live model."""
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    step1 = run / "checkpoints" / "step_000001"
    assert not (step1 / "model.safetensors").exists() and ckpt.has_sharded_state(step1)
    with pytest.raises(ckpt.CheckpointError, match=f"run `mmtok checkpoint consolidate {step1}`"):
        ckpt.load_for_inference(step1)
    assert main(["checkpoint", "consolidate", str(step1)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["weights"] == str(step1 / "model.safetensors") and summary["parameters"] > 0
    assert ckpt.verify(step1) == []  # checksums.json now lists the weights too
    model, cfg, _ = ckpt.load_for_inference(step1)
    live = cfg.model.build()
    opt = cfg.optim.build(live)
    ckpt.load_checkpoint(step1, live, opt, cfg.schedule.build(opt, 10))
    for name, t in live.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name
    # The last checkpoint was consolidated by the run itself; step 1's weights differ from it.
    last, _, _ = ckpt.load_for_inference(run)
    assert not torch.equal(last.tok_embeddings.weight, model.tok_embeddings.weight)
    assert main(["checkpoint", "consolidate", str(tmp_path / "nowhere")]) == 2


def test_layout_mismatch_is_refused(short_run, tokenizer_dir, train_shards, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    step = ckpt.latest_checkpoint(run)
    state = json.loads((step / "train_state.json").read_text())
    state["layout_hash"] = "0123456789abcdef"  # what a checkpoint from another tokenizer carries
    (step / "train_state.json").write_text(json.dumps(state))
    from mmtok.checkpoint.integrity import hash_files, read_manifest, write_manifest

    write_manifest(step, {**read_manifest(step), **hash_files(step, ["train_state.json"])})  # a whole, valid checkpoint
    with pytest.raises(LayoutMismatchError, match="0123456789abcdef"):
        ckpt.load_for_inference(run)
    with pytest.raises(LayoutMismatchError, match=str(step)):
        train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, run, "train.max_steps=4")))


def test_missing_and_corrupt_checkpoints_give_clear_errors(short_run, tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_for_inference(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ckpt.CheckpointError, match="holds no checkpoint"):
        ckpt.load_for_inference(tmp_path / "empty")
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    step = ckpt.latest_checkpoint(run)
    weights = step / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors"):
        ckpt.load_for_inference(run)
    weights.unlink()
    with pytest.raises(ckpt.CheckpointError, match="incomplete: missing model.safetensors"):
        ckpt.load_for_inference(step)
