"""`PackedBatch`: what the data pipeline hands the model (rows of packed documents).

The attention masks and segment lengths the model derives from `doc_ids` live with the model
(`mmtok.model.attention.segment_starts`, `seqlens_of`)."""

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

    def to(self, device, non_blocking: bool = False) -> PackedBatch:
        return PackedBatch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )
