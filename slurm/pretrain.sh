#!/usr/bin/env bash
# Pretrain mmtok on Slurm, one torchrun per node:
#
#   sbatch [--nodes=4 ...] slurm/pretrain.sh CONFIG [key=value ...]      (from the repository root)
#
# GPU nodes: one process per GPU (from SLURM_GPUS_ON_NODE), NCCL. CPU-only nodes
# (sbatch --gpus-per-node=0): MMTOK_NPROC_PER_NODE processes (default 1), gloo.
# Preemption: Slurm sends SIGUSR1 120 s before the time limit; the ranks checkpoint and exit,
# and this script requeues the job, which resumes from OUT/checkpoints/latest (Slurm starts a
# requeued job again once its old credential expires: AuthInfo cred_expire, 120 s by default). A requeue by
# Slurm itself (scontrol requeue, preemption) sends SIGTERM, which checkpoints the same way.
# Env: MMTOK_NPROC_PER_NODE (processes per node), MMTOK_PYTHON (default .venv/bin/python if
# present, else python), MMTOK_ROOT (repository root; default the submit directory).
#SBATCH --job-name=mmtok-pretrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=USR1@120
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -euo pipefail

die() { echo "slurm/pretrain.sh: error: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: sbatch slurm/pretrain.sh CONFIG [key=value ...]"
[ -n "${SLURM_JOB_ID:-}" ] || die "not inside a Slurm job: submit with sbatch"
CONFIG=$1; shift

ROOT=${MMTOK_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$ROOT"
[ -f train/pretrain.py ] || die "$ROOT is not the mmtok repository (no train/pretrain.py); submit from its root or set MMTOK_ROOT"
PY=${MMTOK_PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

# ---- the world: every node must be there, or nothing runs ----------------------------------------
mapfile -t HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
NNODES=${SLURM_NNODES:-${#HOSTS[@]}}
[ "${#HOSTS[@]}" -eq "$NNODES" ] || die "SLURM_NNODES=$NNODES but the node list has ${#HOSTS[@]} hosts"
HEAD=${HOSTS[0]}
# The rendezvous host: the head node's address as Slurm knows it (NodeAddr; the node name itself
# where that is what resolves, as on most clusters).
HEAD_ADDR=$(scontrol show node "$HEAD" 2>/dev/null | grep -oE 'NodeAddr=[^ ]+' | head -1 | cut -d= -f2)
HEAD_ADDR=${HEAD_ADDR:-$HEAD}
# Same on every node, different between concurrent jobs, and new for each restart of a requeued
# job: the previous run's rendezvous store may still hold (or linger on) its port, and a new agent
# that cannot bind it connects to it as a client and fails (RendezvousConnectionError).
RESTART=${SLURM_RESTART_COUNT:-0}
PORT=$((20000 + (SLURM_JOB_ID + 7919 * RESTART) % 20000))

if [ -n "${MMTOK_NPROC_PER_NODE:-}" ]; then
  NPROC=$MMTOK_NPROC_PER_NODE
elif [ -n "${SLURM_GPUS_ON_NODE:-}" ] && [ "$SLURM_GPUS_ON_NODE" -gt 0 ]; then
  NPROC=$SLURM_GPUS_ON_NODE
else
  NPROC=1  # CPU-only node: one process using all its cores
fi
export MMTOK_EXPECTED_WORLD_SIZE=$((NNODES * NPROC))  # ranks refuse to train in a smaller world
CPUS=${SLURM_CPUS_PER_TASK:-$(nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( CPUS / NPROC > 0 ? CPUS / NPROC : 1 ))}

# Resolve the config now: a typo fails here, not after the nodes have started; and we learn
# out_dir (where the latest checkpoint and the COMPLETED marker live).
OUT=$("$PY" -m mmtok train "$CONFIG" "$@" --print-config \
      | "$PY" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["train"]["out_dir"])') \
  || die "bad config $CONFIG $*"

echo "[$(date -Is)] job $SLURM_JOB_ID restart $RESTART: $NNODES node(s) x $NPROC proc(s), head $HEAD ($HEAD_ADDR:$PORT), out $OUT"
if [ -e "$OUT/checkpoints/latest" ]; then
  echo "resuming from $OUT/checkpoints/$(cat "$OUT/checkpoints/latest")"
fi

# torchrun ignores SIGUSR1 (it would die of it and leave its ranks orphaned); the ranks install
# their own handler, checkpoint, and exit 0. --nnodes fixed at NNODES: the c10d rendezvous waits
# for every node and fails after its timeout instead of starting a smaller world.
set +e
srun --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
  bash -c 'trap "" USR1; exec "$@"' torchrun \
  "$PY" -m torch.distributed.run \
    --nnodes "$NNODES" --nproc_per_node "$NPROC" \
    --rdzv_backend c10d --rdzv_endpoint "$HEAD_ADDR:$PORT" --rdzv_id "$SLURM_JOB_ID.$RESTART" \
    train/pretrain.py "$CONFIG" "$@"
rc=$?
set -e

if [ $rc -eq 0 ] && [ ! -f "$OUT/COMPLETED" ]; then
  # Stopped early by SIGUSR1/SIGTERM after checkpointing: run again from the checkpoint.
  echo "[$(date -Is)] stopped before train.max_steps; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit $rc
