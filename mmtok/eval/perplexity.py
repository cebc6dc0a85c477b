"""Per-modality perplexity on held-out data: how well the model predicts text vs audio targets.

The loss is the training loss (`mmtok.loss.batch_loss`: same cross-entropy, same target masks,
same per-modality split by each target token's `Modality`), summed over every target of a
fixed number of held-out batches and divided once, so the result does not depend on how the
tokens were batched. Perplexity = exp(mean nats per token). Specials (`<eos>`, `<eoa>`) count in
"all" only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from mmtok.data.batch import PackedBatch
from mmtok.loss import batch_loss


@torch.no_grad()
def modality_perplexity(model: torch.nn.Module, batches: Iterable[PackedBatch], device: str | torch.device = "cpu",
                        max_batches: int | None = None) -> dict[str, dict]:
    """{"all" | "text" | "audio": {"loss", "perplexity", "tokens"}} over `batches`.

    A modality with no targets in the data gets loss and perplexity None."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64)  # [ce all, ce text, ce audio, n all, n text, n audio]
    one = torch.tensor(1.0, device=device)
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        _, s = batch_loss(model, batch.to(device), one)
        sums += s.cpu()
    model.train(was_training)
    out = {}
    for j, name in enumerate(("all", "text", "audio")):
        n = int(sums[3 + j])
        loss = float(sums[j] / n) if n else None
        out[name] = {"loss": loss, "perplexity": math.exp(loss) if n else None, "tokens": n}
    if out["all"]["tokens"] == 0:
        raise ValueError("no target tokens in the held-out data (empty shards?)")
    return out
