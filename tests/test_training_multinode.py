"""Two "nodes" on one machine: two torchrun launches joined by a c10d rendezvous, as
slurm/pretrain.sh starts one torchrun per node (--nnodes N, --rdzv_backend c10d, the endpoint on
the first node). Each node runs one gloo process of the equivalence worker, which makes any world
size see the same global batch; the losses equal one process's on that batch."""

import socket
import subprocess
import sys

import torch

from tests.fixtures.training import REPO, TINY, _worker_main, read_metrics, subprocess_env, tiny_overrides

STEPS = 4
WORKER = "tests.fixtures.training"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_cmd(port: int, overrides: list[str]) -> list[str]:
    """What slurm/pretrain.sh runs on each node, with 2 nodes x 1 process."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=mmtok-test",
            "--module", WORKER, str(TINY), *overrides]  # fmt: skip


def losses(out) -> torch.Tensor:
    m = read_metrics(out)
    return torch.tensor([m[s]["loss"] for s in range(1, STEPS + 1)], dtype=torch.float64)


def test_two_nodes_rendezvous_and_match_one_process(tokenizer_dir, train_shards, tmp_path):
    common = lambda out: tiny_overrides(tokenizer_dir, train_shards, out, f"train.max_steps={STEPS}",
                                        "train.checkpoint_interval=100")  # fmt: skip
    single, multi = tmp_path / "single", tmp_path / "two_nodes"
    _worker_main([str(TINY), *common(single)])  # 1 process: 4 rows x 2 accumulation steps

    port = _free_port()
    env = {**subprocess_env(), "MMTOK_EXPECTED_WORLD_SIZE": "2"}  # as slurm/pretrain.sh exports
    nodes = [subprocess.Popen(node_cmd(port, common(multi)), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outs = []
    for node in nodes:
        try:
            outs.append(node.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for n in nodes:
                n.kill()
            raise
    assert all(n.returncode == 0 for n in nodes), "\n".join(o[-3000:] for o in outs)
    log = "\n".join(outs)
    assert "global batch 8 x 128 tokens = 4 micro x 1 accum x 2 ranks" in log, log[-3000:]
    torch.testing.assert_close(losses(multi), losses(single), rtol=1e-6, atol=0)
