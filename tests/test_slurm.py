"""slurm/pretrain.sh on a real one-node Slurm cluster (tests/slurm_cluster.py): 2 gloo processes
train on real shards, SIGUSR1 (the preemption warning) checkpoints and requeues the job, and the
requeued job resumes from that checkpoint and finishes."""

import os
import subprocess
import time

import pytest

from mmtok import checkpoint as ckpt
from tests.fixtures.training import REPO, read_metrics, tiny_overrides
from tests.slurm_cluster import SlurmCluster, missing_requirements

MAX_STEPS = 80


@pytest.fixture(scope="module")
def cluster():
    why = missing_requirements()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"Slurm test cluster cannot start in CI: {why}")
        pytest.skip(why)
    with SlurmCluster(cpus=os.cpu_count() or 2) as c:
        yield c


def _wait(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_trains_checkpoints_requeues_on_usr1_and_resumes(cluster, tokenizer_dir, train_shards, tmp_path):
    out, log = tmp_path / "run", tmp_path / "job.out"
    overrides = tiny_overrides(tokenizer_dir, train_shards, out, f"train.max_steps={MAX_STEPS}", "train.log_interval=10")
    job = cluster.sbatch(
        ["--gpus-per-node=0", f"--cpus-per-task={cluster.cpus}", f"--output={log}",
         "slurm/pretrain.sh", "configs/tiny.yaml", *overrides],
        cwd=REPO, env={"MMTOK_NPROC_PER_NODE": "2", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    _wait(lambda: (out / "checkpoints" / "step_000004").is_dir() or cluster.state(job) not in ("PENDING", "RUNNING"),
          180, "the first checkpoint")  # fmt: skip
    assert cluster.state(job) == "RUNNING", log.read_text()[-3000:]
    cluster.run(["scancel", "--signal=USR1", str(job)])  # what --signal=USR1@120 sends before the limit

    # The ranks checkpoint and exit 0; the script requeues the job, which starts again once its
    # revoked credential expires (CRED_EXPIRE_S; 120 s on a default cluster).
    _wait(lambda: int(cluster.job(job).get("Restarts", 0)) >= 1, 120, "the requeue")
    first = log.read_text()
    assert "received signal 10: checkpointed step" in first and "requeueing job" in first, first[-3000:]
    stopped_at = int(first.split("received signal 10: checkpointed step ")[1].split(",")[0])
    assert 4 <= stopped_at < MAX_STEPS, "the run finished before the signal: raise MAX_STEPS"

    info = cluster.wait(job, timeout=240)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{text[-3000:]}\n{cluster.daemon_logs(6000)}"
    assert f"resuming from {out}/checkpoints/step_{stopped_at:06d}" in text
    assert f"resumed from {out}/checkpoints/step_{stopped_at:06d} (step {stopped_at})" in text
    assert "restart 1: 1 node(s) x 2 proc(s)" in text and "restart 0" in text
    metrics = read_metrics(out)
    assert sorted(metrics) == list(range(1, MAX_STEPS + 1))
    assert (out / "COMPLETED").read_text().strip() == str(MAX_STEPS)
    latest = ckpt.latest_checkpoint(out)
    assert latest.name == f"step_{MAX_STEPS:06d}"
    assert ckpt.read_train_state(latest)["world_size"] == 2
    model, cfg, tok = ckpt.load_for_inference(out)
    assert len(tok) == cfg.model.vocab_size


def test_script_refuses_to_run_outside_slurm():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", "slurm/pretrain.sh", "configs/tiny.yaml"], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "not inside a Slurm job" in proc.stderr


def test_a_partial_world_is_refused(monkeypatch):
    """slurm/pretrain.sh exports nodes x procs; a rank that finds a smaller world stops at once."""
    from mmtok.training.parallelize import init_distributed

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MMTOK_EXPECTED_WORLD_SIZE", "4")
    with pytest.raises(RuntimeError, match="expected a world of 4 ranks .* formed 1; refusing"):
        init_distributed("cpu")


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_on_two_nodes_trains_one_world(tokenizer_dir, train_shards, tmp_path):
    """`sbatch --nodes=2`: one torchrun per node (two slurmd on this host), a c10d rendezvous on
    the head node's address, one world of 2 ranks that trains to the end."""
    why = missing_requirements()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"Slurm test cluster cannot start in CI: {why}")
        pytest.skip(why)
    out, log = tmp_path / "run", tmp_path / "job.out"
    overrides = tiny_overrides(tokenizer_dir, train_shards, out, "train.max_steps=6")
    with SlurmCluster(cpus=max(2, os.cpu_count() or 2), nodes=2) as cluster:
        job = cluster.sbatch(
            ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1", f"--output={log}",
             "slurm/pretrain.sh", "configs/tiny.yaml", *overrides],
            cwd=REPO, env={"MMTOK_NPROC_PER_NODE": "1", "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        info = cluster.wait(job, timeout=300)
        text = log.read_text()
        assert info["JobState"] == "COMPLETED", f"{info}\n{text[-3000:]}\n{cluster.daemon_logs(4000)}"
        assert info["NodeList"] == "n[1-2]" and "2 node(s) x 1 proc(s), head n1 (127.0.0.1:" in text
    assert sorted(read_metrics(out)) == list(range(1, 7))
    assert ckpt.read_train_state(ckpt.latest_checkpoint(out))["world_size"] == 2
