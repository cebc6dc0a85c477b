"""The training objective, shared by training and evaluation: next-token cross-entropy over the
targets of a `PackedBatch`, with its sums split by each target token's `Modality`.

Specials (`<eos>`, `<eoa>`) count in "all" only. Summing (not averaging) per micro-batch lets
the caller divide once by the target count of the whole global batch, so the gradient does not
depend on how the batch was split over micro-batches and ranks.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from mmtok.data.batch import PackedBatch
from mmtok.tokenizer.layout import IGNORE_INDEX, Modality

# Order of the sums `batch_loss` returns (float64): cross-entropy, then target counts.
SUM_NAMES = ("ce_all", "ce_text", "ce_audio", "n_all", "n_text", "n_audio")


def batch_loss(model, batch: PackedBatch, normalizer: torch.Tensor, world_size: int = 1,
               autocast=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-ready loss of one micro-batch and its detached per-modality sums (SUM_NAMES).

    loss = summed CE * world_size / normalizer: `normalizer` is the global batch's target count,
    and the world_size factor undoes the mean DDP and FSDP take over ranks' gradients. `autocast`:
    the mixed-precision context to run the forward in (None: none).
    """
    with autocast or contextlib.nullcontext():
        logits = model(batch.tokens, batch.positions, batch.doc_ids)  # (B, T, V) fp32
    ce = F.cross_entropy(
        logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B*T,), 0 where ignored
    loss = ce.sum() * world_size / normalizer
    with torch.no_grad():
        mask = batch.loss_mask.flatten()
        modality = batch.modality.flatten()
        text = mask & (modality == Modality.TEXT)
        audio = mask & (modality == Modality.AUDIO)
        ce64 = ce.detach().double()
        sums = torch.stack([
            ce64.sum(), ce64[text].sum(), ce64[audio].sum(),
            mask.sum().double(), text.sum().double(), audio.sum().double(),
        ])
    return loss, sums
