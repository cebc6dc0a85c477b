"""Where checkpoints live and how a path given by a user resolves to a complete step directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"  # consolidated weights (inference); the last step of a run, or on request
DCP_DIR = "dcp"  # torch.distributed.checkpoint files: model + optimizer, sharded by the saving ranks
DCP_METADATA = ".metadata"  # DCP's index of the shard files (inside DCP_DIR)
SCHEDULER_FILE = "scheduler.pt"  # LambdaLR state; torch.load(weights_only=True)
STATE_FILE = "train_state.json"
LOADER_FILE = "loader.pt"
CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
CHECKSUMS_FILE = "checksums.json"  # sha256 of every other file; written last
REQUIRED = (STATE_FILE, CONFIG_FILE)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable (the message names the path)."""


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


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
    if (path / STATE_FILE).exists() or (path / MODEL_FILE).exists() or (path / DCP_DIR).exists():
        step = path
    else:
        run_dir = path.parent if path.name == CHECKPOINTS else path
        step = latest_checkpoint(run_dir)
        if step is None:
            raise CheckpointError(f"{path} holds no checkpoint (no {CHECKPOINTS}/step_* directory)")
    missing = [f for f in REQUIRED if not (step / f).is_file()]
    if not (step / MODEL_FILE).is_file() and not (step / DCP_DIR / DCP_METADATA).is_file():
        missing.insert(0, f"{MODEL_FILE} and {DCP_DIR}/{DCP_METADATA}")
    if missing:
        raise CheckpointError(f"checkpoint {step} is incomplete: missing {', '.join(missing)}")
    return step


def has_sharded_state(step_dir) -> bool:
    """The step directory holds DCP training state (model + optimizer), i.e. it can be resumed."""
    return (Path(step_dir) / DCP_DIR / DCP_METADATA).is_file()


def read_train_state(step_dir) -> dict:
    path = Path(step_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable train state ({e})") from e


def remove_partial_checkpoints(run_dir) -> list[Path]:
    """Delete `.tmp-*` directories a killed save left behind; return what was removed."""
    root = Path(run_dir) / CHECKPOINTS
    stale = sorted(root.glob(".tmp-*")) if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale
