"""Packing: documents -> rows of exactly `seq_len` (input, next-token target) positions.

A document of L ids gives L-1 positions: inputs ids[:-1], targets ids[1:] (so no target ever
crosses into the next document). Rows hold several documents back to back; each position carries
its document's index in the row (`doc_ids`, -1 on padding) and its position inside the document
(restarting at 0), so the model's block-diagonal causal mask never lets attention cross documents.

Rule, deterministic (the state is the pool, so resume is exact):
  1. keep a pool of up to `pool_size` pending documents (oldest first);
  2. fill a row best-fit: repeatedly place the largest pending document that fits the free space
     (ties: the oldest);
  3. if `min_split` or more positions are still free, the oldest pending document is SPLIT: its
     head fills the row, its tail goes back to the front of the pool as a document of its own
     (positions restart at 0; it cannot see its head). This is also how documents longer than a
     row are cut: into row-sized pieces, in order;
  4. fewer than `min_split` free positions are padding (pad id input, no loss, doc id -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmtok.data.batch import PackedBatch
from mmtok.data.templates import Document
from mmtok.tokenizer.layout import IGNORE_INDEX, Modality, VocabLayout


@dataclass
class Row:
    tokens: np.ndarray  # (T,) int64
    targets: np.ndarray  # (T,) int64, IGNORE_INDEX where no loss
    positions: np.ndarray  # (T,) int64
    doc_ids: np.ndarray  # (T,) int32, -1 on padding
    modality: np.ndarray  # (T,) int8, Modality of the target token (INVALID on padding)


class Packer:
    def __init__(self, layout: VocabLayout, seq_len: int, pool_size: int = 16, min_split: int = 16):
        if not 0 < min_split <= seq_len:
            raise ValueError(f"min_split must be in [1, seq_len={seq_len}], got {min_split}")
        self.layout, self.seq_len = layout, seq_len
        self.pool_size, self.min_split = pool_size, min_split
        self.pool: list[tuple[np.ndarray, np.ndarray]] = []  # pending (ids, loss) documents, oldest first

    def add(self, doc: Document) -> None:
        if len(doc.ids) >= 2:  # one id makes no (input, target) pair
            self.pool.append((doc.ids, doc.loss))

    def ready(self) -> bool:
        """A row can be packed as well as the rule allows (the pool is full)."""
        return len(self.pool) >= self.pool_size

    def __len__(self) -> int:
        return len(self.pool)

    def pop_row(self) -> Row:
        """Pack one row from the pool (call while ready(), or to flush at the end of the data)."""
        free, pieces = self.seq_len, []
        while self.pool:
            sizes = [len(ids) - 1 for ids, _ in self.pool]
            fits = [i for i, n in enumerate(sizes) if n <= free]
            if not fits:
                break
            best = max(fits, key=lambda i: (sizes[i], -i))  # largest, then oldest
            pieces.append(self.pool.pop(best))
            free -= sizes[best]
        if free >= self.min_split and self.pool:
            ids, loss = self.pool.pop(0)
            pieces.append((ids[: free + 1], loss[: free + 1]))  # free positions = free + 1 ids
            self.pool.insert(0, (ids[free:], loss[free:]))  # the tail's first input is the head's last target
            free = 0
        return self._row(pieces)

    def _row(self, pieces) -> Row:
        T = self.seq_len
        row = Row(
            tokens=np.full(T, self.layout.pad_id, np.int64),
            targets=np.full(T, IGNORE_INDEX, np.int64),
            positions=np.zeros(T, np.int64),
            doc_ids=np.full(T, -1, np.int32),
            modality=np.full(T, Modality.INVALID, np.int8),
        )
        t = 0
        for d, (ids, loss) in enumerate(pieces):
            n = len(ids) - 1
            row.tokens[t : t + n] = ids[:-1]
            row.targets[t : t + n] = np.where(loss[1:], ids[1:], IGNORE_INDEX)
            row.positions[t : t + n] = np.arange(n)
            row.doc_ids[t : t + n] = d
            row.modality[t : t + n] = self.layout.modality_of(ids[1:])
            t += n
        return row

    # ---- exact resume -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"pool": [(ids, loss) for ids, loss in self.pool]}

    def load_state_dict(self, state: dict) -> None:
        self.pool = [(np.asarray(ids, np.int64), np.asarray(loss, bool)) for ids, loss in state["pool"]]


def collate_rows(rows: list[Row]) -> PackedBatch:
    """Rows -> PackedBatch of shape (B, T)."""
    stack = lambda name, dtype: torch.from_numpy(np.stack([getattr(r, name) for r in rows])).to(dtype)  # noqa: E731
    return PackedBatch(
        tokens=stack("tokens", torch.int64),
        targets=stack("targets", torch.int64),
        positions=stack("positions", torch.int64),
        doc_ids=stack("doc_ids", torch.int32),
        modality=stack("modality", torch.int8),
    )
