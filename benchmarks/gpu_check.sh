#!/usr/bin/env bash
# The GPU check: xformers vs SDPA, 50 bf16 FSDP2 steps of the 125m preset, tokens/s and MFU,
# Hugging Face Llama of the same shape, compiled vs eager. Prints JSON. Under 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--steps 50 --micro-batch 8 --config 125m]
#
# --dry-run (or MMTOK_GPU_CHECK_DRY=1): CPU, tiny shapes, a few steps, the same JSON keys.
# The Python is benchmarks/gpu_check.py; torchrun gives FSDP2 its process group.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${MMTOK_PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 benchmarks/gpu_check.py "$@"
