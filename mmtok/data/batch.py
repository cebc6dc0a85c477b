"""`PackedBatch`: what the data pipeline hands the model (rows of packed documents)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from mmtok.tokenizer.layout import IGNORE_INDEX


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
        out: list[int] = []
        for row in self.doc_ids.tolist():
            run = 1
            for prev, cur in zip(row, row[1:]):
                if cur == prev:
                    run += 1
                else:
                    out.append(run)
                    run = 1
            out.append(run)
        return out

    def cu_seqlens(self) -> torch.Tensor:  # (n_segments + 1,) int32
        lens = torch.tensor([0] + self.seqlens(), dtype=torch.int32)
        return torch.cumsum(lens, 0, dtype=torch.int32)

    def to(self, device, non_blocking: bool = False) -> "PackedBatch":
        return PackedBatch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )
