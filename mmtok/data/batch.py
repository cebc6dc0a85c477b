"""`PackedBatch`: what the data pipeline hands the model (rows of packed documents)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from mmtok.tokenizer.layout import IGNORE_INDEX


def segment_starts(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: True where a run of equal doc ids begins (every row's first token too).

    A "segment" is one such run; attention never crosses a segment boundary (padding, doc id -1,
    is a segment of its own). The model's attention masks and `seqlens_of` both derive from this.
    """
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return starts


def seqlens_of(doc_ids: torch.Tensor) -> list[int]:
    """Segment lengths of the flattened (B*T) batch, row by row; they sum to B*T."""
    flat_starts = segment_starts(doc_ids).flatten().nonzero().flatten()  # (n_segments,)
    bounds = torch.cat([flat_starts, flat_starts.new_tensor([doc_ids.numel()])])
    return bounds.diff().tolist()


@dataclass
class PackedBatch:
    tokens: torch.Tensor  # (B, T) int64 input ids
    targets: torch.Tensor  # (B, T) int64 next-token ids; IGNORE_INDEX (-100) where no loss
    positions: torch.Tensor  # (B, T) int64 position inside its document; restarts at 0 per document
    doc_ids: torch.Tensor  # (B, T) int32 document index inside the row (0, 1, ...); -1 on padding
    modality: torch.Tensor  # (B, T) int8 `Modality` of each *target* token (for per-modality loss)

    @property
    def loss_mask(self) -> torch.Tensor:  # (B, T) bool
        return self.targets != IGNORE_INDEX

    @property
    def shape(self) -> torch.Size:
        return self.tokens.shape

    def seqlens(self) -> list[int]:
        """Lengths of the consecutive same-doc runs of the flattened (B*T) batch, row by row.

        Padding runs count as their own segments, so the sum is always B*T; this is what
        xformers' BlockDiagonalCausalMask.from_seqlens and flash-attn's cu_seqlens want.
        """
        return seqlens_of(self.doc_ids)

    def cu_seqlens(self) -> torch.Tensor:  # (n_segments + 1,) int32
        lens = torch.tensor([0] + self.seqlens(), dtype=torch.int32)
        return torch.cumsum(lens, 0, dtype=torch.int32)

    def to(self, device, non_blocking: bool = False) -> "PackedBatch":
        return PackedBatch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )
