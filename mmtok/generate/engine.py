"""Batched autoregressive generation with a KV cache.

    generate(model, prompts, GenerationConfig(...), constraint=None) -> new ids per prompt
    generate(model, prompts, GenerationConfig(cfg_coef=3.0), uncond_prompts=...)   # guided

Prompts of different lengths are left-padded to a common length so every row's next token sits in
the same column. Padding carries doc id -1 (never attended to by real tokens, see kv_cache.py)
and real tokens get per-row positions 0..len-1, so a row's ids and logits equal those of the same
prompt generated alone. Each step: one forward of the new column through the cache, then the
logit pipeline (guidance, repetition penalty, constraint mask, temperature/top-k/top-p or argmax).

Classifier-free guidance (`cfg_coef` != 1, as MusicGen and HF's `guidance_scale`): each prompt has
an unconditional twin, the same task with its condition left out, and the twins run as extra rows
of the same batch. Every step mixes the two rows' log-probabilities,
    uncond + cfg_coef * (cond - uncond),
and feeds the chosen token to both, so the twin always continues the same output.
"""

from __future__ import annotations

import torch

from mmtok.generate.sampling import GenerationConfig, apply_repetition_penalty, next_token
from mmtok.model.kv_cache import KVCache

__all__ = ["GenerationConfig", "generate", "left_pad"]


def left_pad(prompts: list[list[int]], pad_id: int, device=None):
    """Prompts -> tokens (B, P), doc_ids (B, P) (0 real, -1 pad), positions (B, P)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt and every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    doc_ids = torch.full((len(prompts), width), -1, dtype=torch.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
        doc_ids[i, width - len(p):] = 0
    n_pad = (doc_ids < 0).sum(dim=1, keepdim=True)  # (B, 1)
    positions = (torch.arange(width)[None, :] - n_pad).clamp(min=0)
    return tokens.to(device), doc_ids.to(device), positions.to(device)


@torch.inference_mode()
def generate(model, prompts: list[list[int]], config: GenerationConfig | None = None,
             constraint=None, pad_id: int = 0, uncond_prompts: list[list[int]] | None = None) -> list[list[int]]:
    """New ids for each prompt: up to max_new_tokens, ending with a stop id if one was emitted.

    constraint: an object with `allowed(step, generated) -> bool (V,) | (B, V)` and `stop_ids`
        (see mmtok/generate/constraints.py); its stop ids join config.stop_ids.
    pad_id: id written under the padding (never attended to; any valid id works).
    uncond_prompts: one unconditional prompt per prompt; needed when config.cfg_coef != 1.
    """
    cfg = (config or GenerationConfig()).validate()
    mcfg = model.config
    device = next(model.parameters()).device
    guided = cfg.cfg_coef != 1.0
    if guided and (uncond_prompts is None or len(uncond_prompts) != len(prompts)):
        raise ValueError(f"cfg_coef={cfg.cfg_coef} needs one unconditional prompt per prompt: got "
                         f"{0 if uncond_prompts is None else len(uncond_prompts)} for {len(prompts)} prompts")
    # Rows [0, b) are the prompts, rows [b, 2b) their unconditional twins when guided.
    tokens, doc_ids, positions = left_pad(prompts + (uncond_prompts if guided else []), pad_id, device)
    b, longest = len(prompts), _check_prompt_ids(tokens, cfg.max_new_tokens, mcfg)
    stop_ids = set(cfg.stop_ids) | set(getattr(constraint, "stop_ids", ()))
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    generator = None
    if cfg.seed is not None and not cfg.greedy:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)

    # Ids each row has seen (prompt, then output), for the repetition penalty; padding is not seen.
    seen = torch.zeros(b, mcfg.vocab_size, dtype=torch.long, device=device)
    seen = seen.scatter_add_(1, tokens[:b], (doc_ids[:b] >= 0).long()) > 0  # (B, V) bool
    out = torch.empty(b, cfg.max_new_tokens, dtype=torch.long, device=device)  # (B, N)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    lengths = torch.full((b,), cfg.max_new_tokens, dtype=torch.long, device=device)
    cache = None
    if cfg.use_cache:
        cache = KVCache.for_model(mcfg, tokens.shape[0], longest, dtype=next(model.parameters()).dtype, device=device)

    was_training = model.training
    model.eval()
    try:
        step_tokens, step_pos, step_doc = tokens, positions, doc_ids
        n = 0  # columns generated
        while n < cfg.max_new_tokens and not bool(done.all()):
            logits = model(step_tokens, step_pos, step_doc, kv_cache=cache)[:, -1].float()  # (B or 2B, V)
            logits = _processed(logits, b, cfg, seen, constraint.allowed(n, out[:, :n]) if constraint is not None else None)
            nxt = next_token(logits, cfg, generator)  # (B,)
            out[:, n] = nxt
            seen[torch.arange(b, device=device), nxt] = True
            hit = torch.isin(nxt, stop) & ~done
            lengths[hit] = n + 1
            done |= hit
            n += 1
            column = (nxt.repeat(2) if guided else nxt)[:, None]  # (B or 2B, 1): the twin follows
            next_pos = step_pos[:, -1:] + 1
            next_doc = torch.zeros_like(column, dtype=torch.int32)
            if cache is not None:  # feed only the new column
                step_tokens, step_pos, step_doc = column, next_pos, next_doc
            else:  # recompute everything: the reference the cache must match
                step_tokens = torch.cat([step_tokens, column], dim=1)
                step_pos = torch.cat([step_pos, next_pos], dim=1)
                step_doc = torch.cat([step_doc, next_doc], dim=1)
    finally:
        model.train(was_training)
    return [row[: min(int(length), n)] for row, length in zip(out.tolist(), lengths)]


def _check_prompt_ids(tokens: torch.Tensor, max_new_tokens: int, mcfg) -> int:
    """The longest row the decode reaches (prompt width + max_new_tokens), checked against the
    model's context; and the prompt ids against its vocabulary."""
    width = tokens.shape[1]
    longest = width + max_new_tokens
    if longest > mcfg.max_seq_len:
        raise ValueError(f"longest prompt ({width}) + max_new_tokens ({max_new_tokens}) = {longest} "
                         f"exceeds the model's max_seq_len {mcfg.max_seq_len}")
    if int(tokens.max()) >= mcfg.vocab_size or int(tokens.min()) < 0:
        raise ValueError(f"prompt ids must be in [0, {mcfg.vocab_size}), got {int(tokens.min())}..{int(tokens.max())}")
    return longest


def _processed(logits: torch.Tensor, b: int, cfg: GenerationConfig, seen: torch.Tensor,
               allowed: torch.Tensor | None) -> torch.Tensor:
    """(B or 2B, V) last-position logits -> (B, V) logits to sample from: guidance mixes each row
    with its unconditional twin (rows b..2b), then the repetition penalty and the constraint."""
    if cfg.cfg_coef != 1.0:
        logp = logits.log_softmax(dim=-1)
        logits = logp[b:] + cfg.cfg_coef * (logp[:b] - logp[b:])  # (B, V)
    logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
    if allowed is not None:
        allowed = _pad_mask(allowed.to(logits.device), logits.shape[-1])
        logits = logits.masked_fill(~allowed, float("-inf"))
    return logits


def _pad_mask(allowed: torch.Tensor, vocab: int) -> torch.Tensor:
    """A layout-sized mask widened to the model's vocabulary (extra rows of the embedding are never allowed)."""
    if allowed.shape[-1] == vocab:
        return allowed
    if allowed.shape[-1] > vocab:
        raise ValueError(f"constraint covers {allowed.shape[-1]} ids but the model has only {vocab}")
    pad = allowed.new_zeros(*allowed.shape[:-1], vocab - allowed.shape[-1])
    return torch.cat([allowed, pad], dim=-1)
