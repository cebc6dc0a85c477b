"""Decoder-only Transformer, LLaMA family: RMSNorm, RoPE, SwiGLU, grouped-query attention.

The math follows HuggingFace's `LlamaForCausalLM` exactly (RoPE in the rotate-half convention,
RMSNorm in fp32), so `mmtok.export.hf` only renames weights. The model knows nothing about
parallelism or losses: training wraps it (DDP/FSDP2) and computes the loss from its logits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmtok.model.attention import AttentionMask, attend, resolve_backend, segment_starts
from mmtok.model.kv_cache import KVCache

if TYPE_CHECKING:  # the config builds the model (ModelConfig.build): no import at run time
    from mmtok.model.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # fp32 statistics whatever the activation dtype (bf16 squares overflow/underflow).
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for every position up to max_seq_len, looked up per token."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)  # (S, D/2)
        angles = torch.cat([freqs, freqs], dim=-1)  # (S, D): rotate-half layout, as HF Llama
        # Not saved in checkpoints: recomputed from the config, so a changed theta can't go stale.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor):
        """(B, T) positions -> cos, sin of shape (B, 1, T, D), broadcast over heads."""
        if positions.numel() and int(positions.max()) >= self.cos.shape[0]:
            raise ValueError(
                f"position {int(positions.max())} >= max_seq_len {self.cos.shape[0]}; "
                "raise max_seq_len in the model config or shorten the sequence"
            )
        return self.cos[positions][:, None], self.sin[positions][:, None]


def apply_rope(x, cos, sin):
    """x (B, H, T, D) rotated by its positions' angles (rotate-half convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, mask: AttentionMask, backend: str, cache: KVCache | None, layer: int):
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, Hq, T, D)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, S, D): every slot so far
        out = attend(q, k, v, mask, backend)  # (B, T, Hq, D)
        return self.wo(out.reshape(b, t, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg.dim, cfg.hidden_dim)
        self.dropout = nn.Dropout(cfg.dropout)  # identity in eval mode, so inference matches HF Llama

    def forward(self, x, cos, sin, mask, backend, cache):
        x = x + self.dropout(self.attention(self.attention_norm(x), cos, sin, mask, backend, cache, self.layer))
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.rope = RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_theta)
        self.layers = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, init_std) everywhere; projections into the residual stream (wo, w2) get
        std / sqrt(2 n_layers) so the residual's variance stays flat with depth (GPT-2)."""
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, mean=0.0, std=residual_std)
            else:
                nn.init.normal_(p, mean=0.0, std=std)
        # Buffers are not parameters: recompute them in case the model was built on the meta device.
        fresh = RotaryEmbedding(self.config.head_dim, self.config.max_seq_len, self.config.rope_theta)
        self.rope.cos.copy_(fresh.cos)
        self.rope.sin.copy_(fresh.sin)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens, positions=None, doc_ids=None, kv_cache: KVCache | None = None):
        """tokens (B, T) int64 -> logits (B, T, V), fp32 whatever the parameter dtype.

        positions (B, T): each token's position inside its document; None = derived from doc_ids
            (restarting at every segment) or 0..T-1. With a cache, the caller passes them.
        doc_ids (B, T): document index of each token, -1 for padding; attention stays inside
            runs of equal ids. None = one document per row.
        kv_cache: decode incrementally; tokens are appended after the cache's filled slots.
        """
        b, t = tokens.shape
        if positions is None:
            if kv_cache is not None and kv_cache.length:
                raise ValueError("positions are required when continuing from a KV cache")
            positions = default_positions(doc_ids, b, t, tokens.device)
        backend = resolve_backend(self.config.attention, tokens.device)
        if kv_cache is None:
            mask = AttentionMask.from_doc_ids(doc_ids, backend)
        else:
            mask = kv_cache.begin(doc_ids, t)
        cos, sin = self.rope(positions)  # (B, 1, T, D) each

        h = self.embedding_dropout(self.tok_embeddings(tokens))  # (B, T, C)
        for block in self.layers:
            h = block(h, cos, sin, mask, backend, kv_cache)
        if kv_cache is not None:
            kv_cache.commit()
        return self.output(self.norm(h)).float()  # (B, T, V)


def default_positions(doc_ids, b: int, t: int, device) -> torch.Tensor:
    """(B, T) position of each token inside its segment (0..T-1 when doc_ids is None)."""
    idx = torch.arange(t, device=device).expand(b, t)
    if doc_ids is None:
        return idx
    starts = torch.where(segment_starts(doc_ids), idx, torch.zeros_like(idx))
    return idx - starts.cummax(dim=1).values
