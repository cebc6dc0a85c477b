"""Model weights as safetensors: one file, tied tensors stored once (their aliases in metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmtok.checkpoint.paths import CheckpointError


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses tensors sharing memory (tied embeddings): store each storage once
    and record the other names as aliases in the file's metadata."""
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
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{path}: cannot read weights ({e})") from e
    for name, target in aliases.items():
        state[name] = state[target]
    return state
