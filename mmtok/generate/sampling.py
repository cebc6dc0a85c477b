"""Choosing the next token from logits: repetition penalty, masks, temperature, top-k, top-p.

Pure functions on (B, V) fp32 logits, applied in HuggingFace's order (penalty, then the
warpers), so a sampled run here and one with `transformers` differ only by their RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GenerationConfig:
    max_new_tokens: int = 256  # most tokens generated per prompt (a stop token counts)
    greedy: bool = False  # argmax; temperature, top_k and top_p are then ignored
    temperature: float = 1.0  # logits are divided by this before sampling (> 0)
    top_k: int = 0  # sample among the k likeliest ids only; 0 = off
    top_p: float = 1.0  # sample within the smallest set of ids of total probability >= p; 1 = off
    cfg_coef: float = 1.0  # classifier-free guidance: uncond + cfg_coef * (cond - uncond) on log-probs;
    #                        > 1 follows the condition (audio or caption) more closely; 1 = off
    repetition_penalty: float = 1.0  # > 1 damps ids already in the prompt or output (CTRL); 1 = off
    stop_ids: tuple[int, ...] = ()  # a row ends once it emits one of these (kept in its output)
    seed: int | None = None  # seeds this call's sampling RNG (same seed, same ids); None = torch's global RNG
    use_cache: bool = True  # KV cache; False recomputes the whole sequence every step (reference)

    def validate(self) -> GenerationConfig:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature} (use greedy=True for argmax)")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.cfg_coef < float("inf"):
            raise ValueError(f"cfg_coef must be finite and >= 0, got {self.cfg_coef} (1 = no guidance)")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        return self


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL penalty: for ids in `seen` (B, V) bool, positive logits / p, negative ones * p."""
    if penalty == 1.0:
        return logits
    damped = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, damped, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of likeliest ids whose probability reaches p (the top id always)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V) probability of strictly likelier ids
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) processed logits -> (B,) ids, by argmax or by sampling the warped distribution."""
    if cfg.greedy:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
