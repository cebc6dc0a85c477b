"""Checkpoint safety: a kill while saving, corrupt or foreign checkpoints give clear errors."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mmtok import checkpoint as ckpt
from mmtok.config import load_config
from mmtok.tokenizer.layout import LayoutMismatchError
from mmtok.training.loop import train
from tests.fixtures.training import REPO, TINY, subprocess_env, tiny_overrides

# Saves step 1 of an ~8M-parameter model (weights only), then step 2 with AdamW moments too
# (~100 MB: the test kills the process while it is busy writing that).
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
    while not list(root.glob(".tmp-step_000002-*/model.safetensors")):
        assert proc.poll() is None, "the save finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(root.glob(".tmp-step_000002-*")), "the kill should have landed mid-write"
    assert not (root / "step_000002").exists()  # nothing half-written under the final name
    assert ckpt.latest_checkpoint(run).name == "step_000001"
    model, cfg, tok = ckpt.load_for_inference(run)
    assert cfg.model.dim == 384 and len(tok) == cfg.model.vocab_size
    # The next run start cleans the partial directory.
    assert [p.name.startswith(".tmp-step_000002") for p in ckpt.remove_partial_checkpoints(run)] == [True]


@pytest.fixture(scope="module")
def short_run(tokenizer_dir, train_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("short")
    train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, out, "train.max_steps=2")))
    return out


def test_layout_mismatch_is_refused(short_run, tokenizer_dir, train_shards, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    step = ckpt.latest_checkpoint(run)
    state = json.loads((step / "train_state.json").read_text())
    state["layout_hash"] = "0123456789abcdef"  # what a checkpoint from another tokenizer carries
    (step / "train_state.json").write_text(json.dumps(state))
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
