"""AdamW with decoupled weight decay on matrices only (no decay on norms, biases, embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak learning rate (the schedule scales it)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (0.95: LLaMA/OLMo, steadier at large batch)
    eps: float = 1e-8  # AdamW denominator epsilon
    weight_decay: float = 0.1  # decoupled decay, applied to weight matrices only
    grad_clip: float = 1.0  # clip the global grad norm to this; 0 = no clipping

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"optim.beta1/beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")

    def build(self, model: nn.Module) -> torch.optim.AdamW:
        decay, no_decay = param_groups(model)
        groups = [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # foreach (not fused): works for CPU, CUDA and FSDP2's DTensor parameters alike.
        return torch.optim.AdamW(
            groups, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps, foreach=True
        )


def param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split trainable parameters into (decayed, not decayed).

    Decay shrinks weights toward zero; that regularises projection matrices but only hurts
    norm gains (which should stay near 1), biases, and embedding rows (rare tokens would decay
    while never receiving gradient). Embeddings are found by module type, so a tied output head
    (the same Parameter) is also excluded.
    """
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim < 2 or id(p) in no_decay_ids or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return decay, no_decay
