"""Reading one task's items from a manifest and encoding their audio, for the task evaluations
(`qa`, `segments`, `playlist`): an item whose audio cannot be read is reported and skipped, the
others are still scored."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from mmtok.data.manifest import read_manifest
from mmtok.data.tasks import item_name, task_of


def task_items(manifest: str | Path, task: str, limit: int | None = None) -> list[dict]:
    """The manifest's items of `task` (the first `limit`); a clear error when it has none."""
    items = [i for i in read_manifest(manifest) if task_of(i) == task][:limit]
    if not items:
        raise ValueError(f"manifest {manifest} has no {task} items")
    return items


def encode_items(items: list[dict], encode: Callable[[dict], object], manifest: str | Path,
                 task: str) -> tuple[list, list[dict], list[dict]]:
    """(encoded, kept items, skipped) where `encode(item)` raised OSError or ValueError for the
    skipped ones ({"item", "error"}, also printed to stderr); an error when none encodes."""
    encoded, kept, skipped = [], [], []
    for n, item in enumerate(items, 1):
        try:
            encoded.append(encode(item))
            kept.append(item)
        except (OSError, ValueError) as e:
            skipped.append({"item": item_name(item), "error": str(e)})
            print(f"mmtok eval: skipping {task} item {n} of {manifest}: {e}", file=sys.stderr)
    if not kept:
        raise ValueError(f"no {task} item of {manifest} could be read (first error: {skipped[0]['error']})")
    return encoded, kept, skipped
