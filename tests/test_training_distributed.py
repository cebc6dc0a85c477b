"""torchrun with 2 gloo processes: DDP equals one process on the same global batch; FSDP2 equals
DDP; a checkpoint from one parallelism resumes under the other; sharded (DCP) checkpoints equal the
full state and resume on another world size (2 -> 1, 1 -> 2)."""

import shutil
import subprocess
import sys

import pytest
import torch

from mmtok import checkpoint as ckpt
from tests.fixtures.training import REPO, TINY, _worker_main, read_metrics, run_pretrain, subprocess_env, tiny_overrides

STEPS = 6
WORKER = "tests.fixtures.training"  # trains on the real shards; every rank cuts the same global batches


def losses(out):
    m = read_metrics(out)
    return torch.tensor([m[s]["loss"] for s in range(1, STEPS + 1)], dtype=torch.float64)


@pytest.fixture(scope="module")
def runs(tokenizer_dir, train_shards, tmp_path_factory):
    """{name: out_dir}: 1 process (4 rows x 2 accumulation), DDP and FSDP2 (2 ranks x 4 rows)."""
    out = {name: tmp_path_factory.mktemp(name) for name in ("single", "ddp", "fsdp", "fsdp_bf16")}
    common = lambda o, *x: tiny_overrides(tokenizer_dir, train_shards, o, f"train.max_steps={STEPS}",
                                          "train.checkpoint_interval=3", *x)  # fmt: skip
    _worker_main([str(TINY), *common(out["single"])])
    run_pretrain(common(out["ddp"], "train.parallelism=ddp"), nproc=2, module=WORKER)
    run_pretrain(common(out["fsdp"], "train.parallelism=fsdp"), nproc=2, module=WORKER)
    run_pretrain(common(out["fsdp_bf16"], "train.parallelism=fsdp", "train.precision=bf16"), nproc=2, module=WORKER)
    return out


def test_two_rank_ddp_matches_single_process(runs):
    torch.testing.assert_close(losses(runs["ddp"]), losses(runs["single"]), rtol=1e-6, atol=0)
    a = ckpt.load_weights(ckpt.latest_checkpoint(runs["ddp"]) / "model.safetensors")
    b = ckpt.load_weights(ckpt.latest_checkpoint(runs["single"]) / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    # The batch plan really differed: 2 micro-batches on 1 rank vs 1 on each of 2.
    assert ckpt.read_train_state(ckpt.latest_checkpoint(runs["ddp"]))["world_size"] == 2


def test_fsdp2_matches_ddp(runs):
    torch.testing.assert_close(losses(runs["fsdp"]), losses(runs["ddp"]), rtol=1e-6, atol=0)
    a = ckpt.load_weights(ckpt.latest_checkpoint(runs["fsdp"]) / "model.safetensors")
    b = ckpt.load_weights(ckpt.latest_checkpoint(runs["ddp"]) / "model.safetensors")
    for k in a:  # FSDP2 saved full, unsharded tensors with the bare model's names
        assert a[k].shape == b[k].shape, k
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_fsdp2_bf16_policy_runs_on_cpu_and_follows_fp32(runs):
    """bf16 parameters in compute with fp32 gradient reduction over gloo (what `precision=auto`
    picks on a CPU with bf16 in hardware): the losses are fp32's to bf16 rounding."""
    ours = losses(runs["fsdp_bf16"])
    assert not torch.equal(ours, losses(runs["fsdp"]))  # bf16 really ran
    torch.testing.assert_close(ours, losses(runs["fsdp"]), rtol=2e-2, atol=0)
    weights = ckpt.load_weights(ckpt.latest_checkpoint(runs["fsdp_bf16"]) / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}  # sharded masters stay fp32


def test_ddp_checkpoint_resumes_under_fsdp2(runs, tokenizer_dir, train_shards, tmp_path):
    """DCP reshards: FSDP2 continues a DDP run from step 3 (sharded only) and matches DDP's 4..6."""
    shutil.copytree(runs["ddp"] / "checkpoints" / "step_000003", tmp_path / "checkpoints" / "step_000003")
    overrides = tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}",
                               "train.parallelism=fsdp")  # fmt: skip
    run_pretrain(overrides, nproc=2, module=WORKER)
    ours, ddp = read_metrics(tmp_path), read_metrics(runs["ddp"])
    assert sorted(ours) == [4, 5, 6]
    for s in (4, 5, 6):
        assert ours[s]["loss"] == pytest.approx(ddp[s]["loss"], rel=1e-6)


# ---- sharded checkpoints (DCP) and elastic resume -------------------------------------------------


def sharded_worker(nproc: int, *argv: str) -> str:
    """`python -m tests.fixtures.sharded ARGV` on `nproc` gloo ranks (1: plain, no torchrun)."""
    target = ["-m", "tests.fixtures.sharded"]
    if nproc > 1:
        target = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "--module",
                  "tests.fixtures.sharded"]  # fmt: skip
    proc = subprocess.run([sys.executable, *target, *argv], cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("parallelism", "mode"), [("fsdp", "async")])
def test_sharded_save_on_two_ranks_equals_the_full_state(tmp_path, parallelism, mode):
    """2 ranks save DCP shards (each rank its own file); the model and AdamW state restored on 1
    process, on 2 ranks under FSDP2, and consolidated, equal the full state gathered at save time."""
    sharded_worker(2, "save", parallelism, str(tmp_path), mode)
    step = ckpt.latest_checkpoint(tmp_path)
    assert sorted(p.name for p in (step / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert ckpt.read_train_state(step)["world_size"] == 2 and ckpt.verify(step) == []
    assert "state equal" in sharded_worker(1, "load", "ddp", str(tmp_path))  # 2 -> 1
    assert "state equal" in sharded_worker(2, "load", "fsdp", str(tmp_path))  # 2 -> 2, resharded to FSDP2
    reference = torch.load(tmp_path / "reference.pt", weights_only=True)["model"]
    consolidated = ckpt.consolidated_state_dict(step)
    assert consolidated.keys() == reference.keys()
    for k, v in reference.items():
        assert torch.equal(consolidated[k], v), k


@pytest.mark.slow
def test_one_rank_checkpoint_loads_on_two_fsdp_ranks(tmp_path):
    sharded_worker(1, "save", "ddp", str(tmp_path))
    assert "state equal" in sharded_worker(2, "load", "fsdp", str(tmp_path))  # 1 -> 2


def test_resume_two_ranks_on_one(runs, tokenizer_dir, train_shards, tmp_path):
    """The 2-rank DDP run's step-3 checkpoint continues on 1 process: steps 4..6 give the losses of
    the uninterrupted runs (the equivalence worker gives every world size the same global batch)."""
    shutil.copytree(runs["ddp"] / "checkpoints" / "step_000003", tmp_path / "checkpoints" / "step_000003")
    _worker_main([str(TINY), *tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}")])
    ours, ddp, single = read_metrics(tmp_path), read_metrics(runs["ddp"]), read_metrics(runs["single"])
    assert sorted(ours) == [4, 5, 6]
    for s in (4, 5, 6):
        assert ours[s]["loss"] == pytest.approx(ddp[s]["loss"], rel=1e-6)
        assert ours[s]["loss"] == pytest.approx(single[s]["loss"], rel=1e-6)
    assert ckpt.read_train_state(ckpt.latest_checkpoint(tmp_path))["world_size"] == 1


def test_resume_one_rank_on_two(runs, tokenizer_dir, train_shards, tmp_path):
    shutil.copytree(runs["single"] / "checkpoints" / "step_000003", tmp_path / "checkpoints" / "step_000003")
    overrides = tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}",
                               "train.async_checkpoint=true", "train.checkpoint_interval=1")  # fmt: skip
    run_pretrain(overrides, nproc=2, module=WORKER)
    ours, single = read_metrics(tmp_path), read_metrics(runs["single"])
    assert sorted(ours) == [4, 5, 6]
    for s in (4, 5, 6):
        assert ours[s]["loss"] == pytest.approx(single[s]["loss"], rel=1e-6)
    # Background saves of every step, all completed, verified and consolidated at the end.
    latest = ckpt.latest_checkpoint(tmp_path)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000005", "step_000006"]
    assert latest.name == "step_000006" and ckpt.verify(latest) == []
    a = ckpt.load_weights(latest / "model.safetensors")
    b = ckpt.load_weights(ckpt.latest_checkpoint(runs["single"]) / "model.safetensors")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
