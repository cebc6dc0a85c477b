"""Consolidation: a step directory's sharded DCP model state -> one `model.safetensors`, in one
process and without torch.distributed (`mmtok checkpoint consolidate DIR`).

DCP loads into whatever state dict it is given, resharding as needed; with no process group it
plans for one process (`dcp.load(..., no_dist=True)`). The model is built on the meta device and
given uninitialised CPU storage, so the only full copy is the one being written. Only the model's
keys are read: the optimizer's shards are left on disk.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import yaml

from mmtok.checkpoint.integrity import hash_files, raise_errors, read_manifest, write_manifest
from mmtok.checkpoint.integrity import verify as check_checksums
from mmtok.checkpoint.paths import (
    CONFIG_FILE,
    DCP_DIR,
    DCP_METADATA,
    MODEL_FILE,
    CheckpointError,
    has_sharded_state,
    resolve_checkpoint,
)
from mmtok.checkpoint.weights import save_weights
from mmtok.config import RunConfig, from_dict


@contextlib.contextmanager
def quiet_dcp():
    """DCP warns that it assumes one process when there is no process group (the intent here) and
    about its own use of TypedStorage; neither is news to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        yield


def read_run_config(step_dir: Path) -> RunConfig:
    try:
        return from_dict(RunConfig, yaml.safe_load((step_dir / CONFIG_FILE).read_text()))
    except Exception as e:
        raise CheckpointError(f"{step_dir / CONFIG_FILE}: cannot read the run config ({e})") from e


def consolidated_state_dict(step_dir, verify: bool = True) -> dict[str, torch.Tensor]:
    """The full model state dict of a step dir's DCP files (one process, no process group)."""
    step_dir = resolve_checkpoint(step_dir)
    if not has_sharded_state(step_dir):
        raise CheckpointError(f"{step_dir} has no sharded state ({DCP_DIR}/{DCP_METADATA}) to consolidate")
    if verify:
        dcp_files = [f for f in read_manifest(step_dir) if f.startswith(DCP_DIR + "/")]
        raise_errors(check_checksums(step_dir, [*dcp_files, CONFIG_FILE]))
    config = read_run_config(step_dir)
    with torch.device("meta"):
        model = config.model.build()
    model.to_empty(device="cpu")  # keeps tied parameters tied; values come from the checkpoint
    state = model.state_dict()
    try:
        with quiet_dcp():
            dcp.load({"model": state}, storage_reader=dcp.FileSystemReader(step_dir / DCP_DIR), no_dist=True)
    except Exception as e:
        raise CheckpointError(f"{step_dir / DCP_DIR}: cannot read the model state ({e})") from e
    return state


def consolidate(step_dir, verify: bool = True) -> Path:
    """Write `model.safetensors` into the step dir from its DCP files; update checksums.json.

    Atomic: the weights are written beside their final name and renamed, then the manifest is
    replaced. Returns the weights' path."""
    step_dir = resolve_checkpoint(step_dir)
    state = consolidated_state_dict(step_dir, verify=verify)
    target = step_dir / MODEL_FILE
    tmp = step_dir / f".{MODEL_FILE}.tmp{os.getpid()}"
    try:
        save_weights(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        digest = hash_files(step_dir, [tmp.name])[tmp.name]
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        files = read_manifest(step_dir)
    except CheckpointError:
        if verify:
            raise
        files = {}
    files[MODEL_FILE] = digest
    write_manifest(step_dir, files)
    return target
