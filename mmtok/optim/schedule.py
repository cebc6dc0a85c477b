"""Learning-rate schedule: linear warmup, then cosine decay to a floor, then flat."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class ScheduleConfig:
    warmup_steps: int = 100  # linear ramp from ~0 to the peak lr over these steps
    decay_steps: int | None = None  # cosine decay length after warmup; None = until train.max_steps
    min_lr_ratio: float = 0.1  # the cosine ends at peak_lr * min_lr_ratio

    def __post_init__(self):
        if self.warmup_steps < 0:
            raise ValueError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def build(self, optimizer: torch.optim.Optimizer, max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        decay = self.decay_steps if self.decay_steps is not None else max(max_steps - self.warmup_steps, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, WarmupCosine(self.warmup_steps, decay, self.min_lr_ratio)
        )


@dataclass
class WarmupCosine:
    """lr multiplier at `step` (0-based count of optimizer steps already taken).

    A small dataclass rather than a closure so LambdaLR.state_dict() stores its fields as
    plain values (loadable with weights_only=True) and resume sees the same schedule.
    """

    warmup_steps: int
    decay_steps: int
    min_lr_ratio: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)  # never exactly 0: step 0 still learns
        progress = min((step - self.warmup_steps) / max(self.decay_steps, 1), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
