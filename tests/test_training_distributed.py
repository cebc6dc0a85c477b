"""torchrun with 2 gloo processes: DDP equals one process on the same global batch; FSDP2 equals
DDP; a checkpoint from one parallelism resumes under the other."""

import pytest
import torch

from mmtok import checkpoint as ckpt
from tests.fixtures.training import TINY, _worker_main, read_metrics, run_pretrain, tiny_overrides

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
    """Checkpoints are unsharded: FSDP2 continues a DDP run from step 3 and matches DDP's 4..6."""
    import shutil

    shutil.copytree(runs["ddp"] / "checkpoints" / "step_000003", tmp_path / "checkpoints" / "step_000003")
    overrides = tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}",
                               "train.parallelism=fsdp")  # fmt: skip
    run_pretrain(overrides, nproc=2, module=WORKER)
    ours, ddp = read_metrics(tmp_path), read_metrics(runs["ddp"])
    assert sorted(ours) == [4, 5, 6]
    for s in (4, 5, 6):
        assert ours[s]["loss"] == pytest.approx(ddp[s]["loss"], rel=1e-6)
