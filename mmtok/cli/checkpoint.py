"""`mmtok checkpoint consolidate DIR` and `mmtok checkpoint verify DIR`: work on checkpoint
directories (a run directory means its latest checkpoint)."""

from __future__ import annotations

import json
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("checkpoint", help="consolidate or verify training checkpoints",
                              description="Work on checkpoint directories written by `mmtok train`.")
    sub = p.add_subparsers(dest="checkpoint_command", required=True, metavar="COMMAND")
    c = sub.add_parser(
        "consolidate",
        help="write model.safetensors (full weights, for inference) from a checkpoint's sharded files",
        description="Read the model's DCP shards of a step directory in one process (no torch.distributed) "
        "and write model.safetensors beside them, which `mmtok caption`, `generate`, `eval` and `export-hf` "
        "load. DIR: a step directory, a run directory (its latest checkpoint) or its checkpoints/.",
    )
    c.add_argument("dir", metavar="DIR", help="step, run or checkpoints/ directory")
    c.add_argument("--no-verify", action="store_true", help="skip checking the shards' sha256 checksums first")
    c.set_defaults(func=run_consolidate)
    v = sub.add_parser("verify", help="check every file of a checkpoint against its checksums.json",
                       description="Hash every file listed in checksums.json and compare; exit 2 naming the "
                       "first bad file.")  # fmt: skip
    v.add_argument("dir", metavar="DIR", help="step, run or checkpoints/ directory")
    v.set_defaults(func=run_verify)


def run_consolidate(args) -> int:
    from mmtok.checkpoint import CheckpointError, consolidate, load_weights, resolve_checkpoint
    from mmtok.cli import CLIError

    try:
        step = resolve_checkpoint(args.dir)
        path = consolidate(step, verify=not args.no_verify)
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    weights = load_weights(path)
    print(json.dumps({"checkpoint": str(step), "weights": str(path), "tensors": len(weights),
                      "parameters": sum(t.numel() for t in weights.values()),
                      "bytes": path.stat().st_size}))  # fmt: skip
    return 0


def run_verify(args) -> int:
    from mmtok.checkpoint import CheckpointError, read_train_state, resolve_checkpoint
    from mmtok.checkpoint.integrity import raise_errors, read_manifest, verify
    from mmtok.cli import CLIError

    try:
        step = resolve_checkpoint(args.dir)
        t0 = time.perf_counter()
        raise_errors(verify(step))
        seconds = time.perf_counter() - t0
        files = read_manifest(step)
        state = read_train_state(step)
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    total = sum(f["bytes"] for f in files.values())
    print(json.dumps({"checkpoint": str(step), "step": state.get("step"), "files": len(files), "bytes": total,
                      "seconds": round(seconds, 3), "ok": True}))  # fmt: skip
    return 0
