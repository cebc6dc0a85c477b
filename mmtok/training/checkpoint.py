"""Checkpoints: one self-contained directory per step, written aside and renamed into place.

    OUT/checkpoints/
      step_000100/
        model.safetensors    full (unsharded) fp32 weights, names as in the bare Transformer
        optim.pt             {"optimizer": full AdamW state keyed by parameter name,
                              "scheduler": LambdaLR state}; torch.load(weights_only=True)
        loader.pt            [data-loader state of rank 0, rank 1, ...] (they hold tensors, so
                              not JSON); torch.load(weights_only=True)
        train_state.json     step, layout hash, world size, config, per-rank RNG states
        config.yaml          the RunConfig (vocab size resolved)
        tokenizer/           the tokenizer directory (hard links to OUT/tokenizer when possible)
      latest                 text file naming the newest complete step directory

DDP and FSDP2 both go through torch.distributed.checkpoint.state_dict with full_state_dict:
every rank takes part in gathering, rank 0 writes one unsharded file set that loads anywhere
(any world size, DDP or FSDP, or a plain model for inference). Unsharded files cost rank-0
memory at 7B scale; DCP's sharded format would avoid that, at the price of files that need
torch.distributed to read. A kill at any point leaves `latest` on a complete directory: the new
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

CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optim.pt"
STATE_FILE = "train_state.json"
LOADER_FILE = "loader.pt"
CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
REQUIRED = (MODEL_FILE, STATE_FILE, CONFIG_FILE)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable (the message names the path)."""


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


# ---- finding checkpoints -------------------------------------------------------------------------


def list_checkpoints(run_dir) -> list[Path]:
    """Complete step directories of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    steps = [p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(steps, key=lambda p: int(p.name[5:]))


def latest_checkpoint(run_dir) -> Path | None:
    """The step directory `latest` names, else the newest complete one, else None."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if candidate.is_dir():
            return candidate
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path) -> Path:
    """A run dir, its checkpoints/ dir, or a step dir -> a complete step dir (or CheckpointError)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    if (path / STATE_FILE).exists() or (path / MODEL_FILE).exists():
        step = path
    else:
        run_dir = path.parent if path.name == CHECKPOINTS else path
        step = latest_checkpoint(run_dir)
        if step is None:
            raise CheckpointError(f"{path} holds no checkpoint (no {CHECKPOINTS}/step_* directory)")
    missing = [f for f in REQUIRED if not (step / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {step} is incomplete: missing {', '.join(missing)}")
    return step


def read_train_state(step_dir) -> dict:
    path = Path(step_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable train state ({e})") from e


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


# ---- weights -------------------------------------------------------------------------------------


def _save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses tensors sharing memory (tied embeddings): store each storage once
    and record the other names as aliases in the file's metadata."""
    from safetensors.torch import save_file

    kept, aliases, by_ptr = {}, {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and key in by_ptr:
            aliases[name] = by_ptr[key]
        else:
            by_ptr[key] = name
            kept[name] = t.contiguous()
    save_file(kept, str(path), metadata={"aliases": json.dumps(aliases), "format": "pt"})


def load_weights(path) -> dict[str, torch.Tensor]:
    """model.safetensors -> full state dict (aliases restored). CheckpointError if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{path}: cannot read weights ({e})") from e
    for name, target in aliases.items():
        state[name] = state[target]
    return state


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
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

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
    _save_weights(model_sd, tmp / MODEL_FILE)
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


def remove_partial_checkpoints(run_dir) -> list[Path]:
    """Delete `.tmp-*` directories a killed save left behind; return what was removed."""
    root = Path(run_dir) / CHECKPOINTS
    stale = sorted(root.glob(".tmp-*")) if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


# ---- load for training ---------------------------------------------------------------------------


def load_checkpoint(step_dir, model: nn.Module, optimizer, scheduler) -> dict:
    """Restore model, optimizer and scheduler (any parallelism) from a step dir; set this rank's
    RNG; return the train state with this rank's `data` loader state. Collective under dist."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

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


# ---- load for inference --------------------------------------------------------------------------


def load_for_inference(path, device="cpu"):
    """(model in eval mode on `device`, RunConfig, MultimodalTokenizer) from a run or step dir.

    Raises CheckpointError for a missing/incomplete/corrupt checkpoint and LayoutMismatchError
    when the checkpoint's tokenizer layout differs from the one it was trained with.
    """
    from mmtok.config import RunConfig, from_dict
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    step_dir = resolve_checkpoint(path)
    state = read_train_state(step_dir)
    try:
        import yaml

        config = from_dict(RunConfig, yaml.safe_load((step_dir / CONFIG_FILE).read_text()))
    except Exception as e:
        raise CheckpointError(f"{step_dir / CONFIG_FILE}: cannot read the run config ({e})") from e
    tok_dir = step_dir / TOKENIZER_DIR
    if not tok_dir.is_dir():
        if not config.tokenizer or not Path(config.tokenizer).is_dir():
            raise CheckpointError(f"{step_dir} has no {TOKENIZER_DIR}/ and its config names none that exists")
        tok_dir = Path(config.tokenizer)
    tokenizer = MultimodalTokenizer.from_pretrained(tok_dir)
    tokenizer.layout.require(state.get("layout_hash"), f"checkpoint {step_dir}")
    model = config.model.build()
    weights = load_weights(step_dir / MODEL_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{step_dir / MODEL_FILE}: weights do not fit the model config ({e})") from e
    return model.to(device).eval(), config, tokenizer
