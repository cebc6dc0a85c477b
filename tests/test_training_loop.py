"""The training loop on real shards: metrics, checkpoints, exact resume after kills, signals."""

import json
import signal
import subprocess
import time

import pytest
import torch

from mmtok import checkpoint as ckpt
from mmtok.config import load_config
from mmtok.training.loop import train
from tests.fixtures.training import REPO, TINY, pretrain_cmd, read_metrics, subprocess_env, tiny_overrides

STEPS = 8


@pytest.fixture(scope="module")
def reference_run(tokenizer_dir, train_shards, tmp_path_factory):
    """An uninterrupted in-process run of STEPS steps: what every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, out, f"train.max_steps={STEPS}")))
    return out


def test_run_logs_metrics_and_writes_checkpoints(reference_run, tokenizer_dir):
    metrics = read_metrics(reference_run)
    assert sorted(metrics) == list(range(1, STEPS + 1))
    first, last = metrics[1], metrics[STEPS]
    for key in ("loss", "loss/text", "loss/audio", "lr", "grad_norm", "perf/tokens_per_s",
                "perf/step_time_s", "perf/mfu", "memory/max_rss_gib"):
        assert isinstance(last[key], float) and last[key] > 0, key
    assert last["loss"] < first["loss"]  # it learns something in 8 steps on real data
    # lr follows warmup (2 steps) then cosine: rising, then falling.
    lrs = [metrics[s]["lr"] for s in range(1, STEPS + 1)]
    assert lrs[0] < lrs[1] < lrs[2] and lrs[3] > lrs[-1]

    # keep_last_k=2 with checkpoints at 4 and 8.
    steps = [p.name for p in ckpt.list_checkpoints(reference_run)]
    assert steps == ["step_000004", "step_000008"]
    latest = ckpt.latest_checkpoint(reference_run)
    assert latest.name == "step_000008"
    for name in ("model.safetensors", "dcp/.metadata", "dcp/__0_0.distcp", "scheduler.pt", "train_state.json",
                 "config.yaml", "tokenizer/layout.json", "checksums.json"):
        assert (latest / name).is_file(), name
    assert torch.load(latest / "scheduler.pt", weights_only=True)["last_epoch"] == STEPS
    assert not (reference_run / "checkpoints" / "step_000004" / "model.safetensors").exists()  # only the last
    state = json.loads((latest / "train_state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 1
    assert state["layout_hash"] == json.loads((tokenizer_dir / "layout.json").read_text())["hash"]
    loader_states = torch.load(latest / state["loader_state"], weights_only=True)
    assert loader_states[0]["batches"] == STEPS * 2  # 2 micro-batches per step
    assert (reference_run / "COMPLETED").read_text().strip() == str(STEPS)


def test_load_for_inference_reproduces_training_logits(reference_run, train_shards, tokenizer_dir):
    model, cfg, tok = ckpt.load_for_inference(reference_run)
    assert not model.training and len(tok) == cfg.model.vocab_size
    same, _, _ = ckpt.load_for_inference(reference_run / "checkpoints" / "step_000008")
    x = torch.randint(0, len(tok), (1, 16))
    torch.testing.assert_close(model(x), same(x), rtol=0, atol=0)
    # The weights are the trained ones, not a fresh init.
    fresh = cfg.model.build()
    assert not torch.equal(fresh.tok_embeddings.weight, model.tok_embeddings.weight)


def test_resume_after_sigkill_matches_uninterrupted_run(reference_run, tokenizer_dir, train_shards, tmp_path):
    # A long run, killed -9 once its first checkpoint (step 4) exists.
    overrides = tiny_overrides(tokenizer_dir, train_shards, tmp_path, "train.max_steps=1000")
    proc = subprocess.Popen(pretrain_cmd(overrides), cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "checkpoints" / "step_000004").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.latest_checkpoint(tmp_path)
    resumed_from = int(killed_at.name[5:])
    assert resumed_from < STEPS, "the run got too far before the kill to test anything"

    train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}")))
    ours, ref = read_metrics(tmp_path), read_metrics(reference_run)
    for step in range(1, STEPS + 1):  # steps after the checkpoint were recomputed after resuming
        assert ours[step]["loss"] == ref[step]["loss"], step
        assert ours[step]["grad_norm"] == ref[step]["grad_norm"], step
        assert ours[step]["loss/audio"] == ref[step]["loss/audio"], step


def test_sigterm_checkpoints_exits_cleanly_and_resumes_exactly(reference_run, tokenizer_dir, train_shards, tmp_path):
    overrides = tiny_overrides(tokenizer_dir, train_shards, tmp_path, "train.max_steps=1000",
                               "train.checkpoint_interval=1000")
    proc = subprocess.Popen(pretrain_cmd(overrides), cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "metrics.jsonl").exists() or len((tmp_path / "metrics.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    stopped = ckpt.latest_checkpoint(tmp_path)
    assert stopped is not None and "received signal" in err
    step = int(stopped.name[5:])
    assert step == max(read_metrics(tmp_path))  # saved at the step it stopped, not a scheduled one
    assert not (tmp_path / "COMPLETED").exists()
    if step >= STEPS:
        pytest.skip(f"the signal arrived late (step {step}); the resume part needs < {STEPS}")
    train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}")))
    ours, ref = read_metrics(tmp_path), read_metrics(reference_run)
    assert [ours[s]["loss"] for s in range(1, STEPS + 1)] == [ref[s]["loss"] for s in range(1, STEPS + 1)]


def test_time_budget_ends_the_run_with_a_checkpoint(tokenizer_dir, train_shards, tmp_path):
    record = train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, tmp_path,
                                                    "train.max_steps=10000", "train.max_minutes=0.0001")))  # fmt: skip
    step = record["step"]
    assert 1 <= step < 10000 and ckpt.latest_checkpoint(tmp_path).name == f"step_{step:06d}"
    assert (tmp_path / "COMPLETED").read_text().strip() == str(step)


def test_bf16_autocast_on_cpu_follows_the_fp32_run(reference_run, tokenizer_dir, train_shards, tmp_path):
    """`train.precision=bf16` on CPU: matmuls in bf16, parameters, logits and loss in fp32. The same
    data and init give the fp32 run's losses to bf16 rounding, and the checkpoint stays fp32."""
    train(load_config(TINY, tiny_overrides(tokenizer_dir, train_shards, tmp_path, f"train.max_steps={STEPS}",
                                           "train.precision=bf16")))  # fmt: skip
    ours, ref = read_metrics(tmp_path), read_metrics(reference_run)
    assert ours[1]["loss"] != ref[1]["loss"]  # bf16 really ran
    torch.testing.assert_close([ours[s]["loss"] for s in range(1, STEPS + 1)],
                               [ref[s]["loss"] for s in range(1, STEPS + 1)], rtol=2e-2, atol=0)  # fmt: skip
    model, _, _ = ckpt.load_for_inference(tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_native_bf16_detection_agrees_with_the_kernel(tmp_path):
    """`precision=auto` picks bf16 on a CPU iff /proc/cpuinfo lists AVX512-BF16 or AMX tiles."""
    from pathlib import Path

    from mmtok.training.parallelize import autocast_dtype, cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo (not Linux)")
    flags = {f for line in cpuinfo.read_text().splitlines() if line.startswith("flags") for f in line.split()}
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype("auto", torch.device("cpu")) == expected
    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
