"""Save and restore the whole training state: model, optimizer, scheduler, loader, RNG.

Both are collective under torch.distributed. DDP and FSDP2 go through
torch.distributed.checkpoint.state_dict with full_state_dict: every rank takes part in
gathering, rank 0 writes one unsharded file set that loads anywhere (any DDP/FSDP layout, or a
plain model for inference). A kill at any point leaves `latest` on a complete directory: the new
one is written as `.tmp-step_*` and appears under its final name only by rename.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from mmtok.checkpoint.paths import (
    CHECKPOINTS,
    CONFIG_FILE,
    LATEST,
    LOADER_FILE,
    MODEL_FILE,
    OPTIM_FILE,
    STATE_FILE,
    TOKENIZER_DIR,
    CheckpointError,
    list_checkpoints,
    read_train_state,
    resolve_checkpoint,
    step_dir_name,
)
from mmtok.checkpoint.weights import load_weights, save_weights


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


# ---- RNG state (JSON-safe) -----------------------------------------------------------------------


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


# ---- save ----------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a directory using hard links where the filesystem allows (tokenizers repeat per step)."""
    shutil.copytree(src, dst, copy_function=_link_or_copy)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def save_checkpoint(
    run_dir,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    train_state: dict,
    config_yaml: str,
    tokenizer_dir,
    keep_last_k: int,
) -> Path | None:
    """Collective: every rank calls it. Rank 0 writes and returns the step dir; others None.

    `train_state` holds this rank's JSON-safe extras (`data`: loader state, plus anything else);
    the per-rank parts are gathered so one file holds all ranks' loader and RNG states.
    """
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=opts)
    per_rank = {"data": train_state.pop("data", None), "rng": rng_state()}
    if dist.is_initialized():
        gathered = [None] * _world()
        dist.all_gather_object(gathered, per_rank)
    else:
        gathered = [per_rank]
    if _rank() != 0:
        dist.barrier()
        return None

    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model_sd, tmp / MODEL_FILE)
    torch.save({"optimizer": optim_sd, "scheduler": scheduler.state_dict()}, tmp / OPTIM_FILE)
    torch.save([r.pop("data") for r in gathered], tmp / LOADER_FILE)
    state = {**train_state, "step": step, "world_size": _world(), "loader_state": LOADER_FILE, "ranks": gathered}
    (tmp / STATE_FILE).write_text(json.dumps(state))
    (tmp / CONFIG_FILE).write_text(config_yaml)
    if tokenizer_dir is not None:
        _link_tree(Path(tokenizer_dir), tmp / TOKENIZER_DIR)
    for f in tmp.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if final.exists():  # re-saving a step (e.g. signal right after a scheduled save)
        shutil.rmtree(final)
    os.rename(tmp, final)
    pointer_tmp = root / f".{LATEST}.tmp"
    pointer_tmp.write_text(final.name + "\n")
    os.replace(pointer_tmp, root / LATEST)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep_last_k] if keep_last_k > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return final


# ---- load for training ---------------------------------------------------------------------------


def load_checkpoint(step_dir, model: nn.Module, optimizer, scheduler) -> dict:
    """Restore model, optimizer and scheduler (any parallelism) from a step dir; set this rank's
    RNG; return the train state with this rank's `data` loader state. Collective under dist."""
    step_dir = resolve_checkpoint(step_dir)
    state = read_train_state(step_dir)
    if state["world_size"] != _world():
        raise CheckpointError(
            f"{step_dir} was written by {state['world_size']} ranks, this run has {_world()}: "
            "the per-rank data-loader states cannot be split differently"
        )
    try:
        extra = torch.load(step_dir / OPTIM_FILE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{step_dir / OPTIM_FILE}: cannot read optimizer state ({e})") from e
    # Every rank reads the full tensors and keeps its part (its FSDP shard, or all of it for
    # DDP). Simple and format-agnostic; it costs one full copy in host memory per rank while
    # loading. (broadcast_from_rank0 would need one copy per job, but its optimizer path does
    # not pair up its collectives when the other ranks pass empty state in torch 2.10.)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=load_weights(step_dir / MODEL_FILE),
        optim_state_dict=extra["optimizer"],
        options=StateDictOptions(full_state_dict=True),
    )
    scheduler.load_state_dict(extra["scheduler"])
    try:
        loader_states = torch.load(step_dir / state["loader_state"], weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{step_dir / state['loader_state']}: cannot read data-loader states ({e})") from e
    set_rng_state(state["ranks"][_rank()]["rng"])
    return {**state, "data": loader_states[_rank()]}
