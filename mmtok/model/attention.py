"""Attention backends, all respecting document boundaries inside packed rows.

A packed row holds several documents; a token may attend only to earlier tokens of its own
segment (a run of equal doc ids, see `segment_starts`). `AttentionMask` says
this once per forward pass, in every form a backend wants, and each backend reads its form:

    xformers  memory_efficient_attention over the flattened (1, B*T) batch with a
              BlockDiagonalCausalMask built from the segment lengths (no dense mask); CUDA only
    sdpa      torch scaled_dot_product_attention: is_causal when each row is one segment; packed
              rows on CPU go segment by segment (is_causal on each, like a varlen kernel: CPU
              kernels compute every masked block, so a dense mask costs ~3x here on the demo's
              ~300-token documents in 1024-token rows), on GPU one call with a dense
              (B, 1, T, T) block-diagonal causal boolean mask
    math      the plain softmax(QK^T / sqrt(d)) V reference, dense mask
    auto      xformers where its kernels run (CUDA tensors), sdpa otherwise

Under torch.compile (train.compile: each Transformer block compiled on its own), a graph must not
depend on how many documents a row holds, or dynamo compiles one graph per document count and
gives up after its recompile limit (8), running eager from then on. The segment lengths are a
Python list whose length varies from batch to batch, so the compiled path never reads them:

    sdpa, math  build the (B, 1, T, T) block-diagonal causal mask inside the graph from
                `AttentionMask.segments`, a (B, T) tensor of each token's segment index in its row:
                its shape is fixed, so one graph serves every batch (plus one for rows of a single
                document, which take the is_causal form). Dense masking computes every masked
                block, which the eager CPU path avoids by going segment by segment.
    xformers    the kernel call (BlockDiagonalCausalMask from the lengths, no dense mask) is left
                out of the graph (`torch.compiler.disable`): the projections, RoPE and feed-forward
                around it compile once, and the kernel, already a fused CUDA kernel, runs as is.

docs/training.md ("Compile") says why this and not FlexAttention or a padded cu_seqlens tensor.

Decoding with a KV cache always uses the dense (sdpa) form: queries and keys differ in length and
the cache's rows hold left padding (see mmtok/model/kv_cache.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
class AttentionMask:
    """Which keys each query may see, in one of three forms; none set = every key is visible
    (a decode step whose row has no padding in the cache)."""

    causal: bool = False  # plain lower-triangular: every row is one segment, no cache
    dense: torch.Tensor | None = None  # (B, 1, Tq, Tk) bool, True = may attend
    seqlens: list[int] | None = None  # segment lengths of the flattened batch (xformers form)
    segments: torch.Tensor | None = None  # (B, T) int segment index of each token in its row (with
    #   seqlens: the fixed-shape form a compiled graph builds its dense mask from)

    @classmethod
    def from_doc_ids(cls, doc_ids: torch.Tensor | None, backend: str) -> AttentionMask:
        """Mask for a full (uncached) forward over (B, T) tokens with these doc ids."""
        if doc_ids is None:
            return cls(causal=True)
        starts = segment_starts(doc_ids)  # (B, T)
        if not starts[:, 1:].any():
            return cls(causal=True)
        if backend == "xformers" or (backend == "sdpa" and doc_ids.device.type == "cpu"):
            return cls(seqlens=seqlens_of(doc_ids), segments=starts.cumsum(dim=1))
        return cls(dense=block_causal_mask(starts))

    def as_dense(self, t: int, device) -> torch.Tensor | None:
        """(B or 1, 1, Tq, Tk) bool form for `math`; None when every key is visible."""
        if self.dense is not None:
            return self.dense
        if self.causal:
            return torch.ones(t, t, dtype=torch.bool, device=device).tril()[None, None]
        if self.segments is not None:
            return segment_causal_mask(self.segments)
        if self.seqlens is not None:
            raise ValueError("a seqlens-only mask has no dense form here; build it with from_doc_ids")
        return None


def block_causal_mask(starts: torch.Tensor) -> torch.Tensor:
    """(B, T) segment starts -> (B, 1, T, T) bool: causal and inside the same segment."""
    return segment_causal_mask(starts.cumsum(dim=1))


def segment_causal_mask(segment: torch.Tensor) -> torch.Tensor:
    """(B, T) segment index inside each row -> (B, 1, T, T) bool: causal and in the same segment.
    Pure tensor ops of fixed shape: a compiled graph builds it without knowing the segment count."""
    t = segment.shape[1]
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=segment.device).tril()
    return (same & causal)[:, None]


@functools.cache
def xformers_available() -> bool:
    """True when xformers imports and has CUDA to run its kernels on."""
    if not torch.cuda.is_available():
        return False
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "xformers" if device.type == "cuda" and xformers_available() else "sdpa"
    if backend == "xformers" and device.type != "cuda":
        raise ValueError(
            "attention='xformers' needs CUDA tensors (its kernels have no CPU version); "
            "use 'auto' or 'sdpa' on CPU"
        )
    return backend


def repeat_kv(x: torch.Tensor, n_rep: int, dim: int) -> torch.Tensor:
    """Repeat each key/value head n_rep times along `dim` (GQA -> one kv head per query head)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=dim)


def attend(q, k, v, mask: AttentionMask, backend: str) -> torch.Tensor:
    """q (B, Hq, Tq, D), k/v (B, Hkv, Tk, D) -> (B, Tq, Hq, D).

    `backend` is already resolved (not "auto"). The output comes back token-major so the caller
    can merge heads with a view.
    """
    n_rep = q.shape[1] // k.shape[1]
    if backend == "xformers" and (mask.causal or mask.seqlens is not None):  # full, uncached forward
        return _xformers(q, k, v, mask, n_rep)  # outside the graph under torch.compile
    if torch.compiler.is_compiling() and mask.segments is not None:
        # The lengths list would specialise the graph on the document count: mask from the tensor.
        mask = AttentionMask(dense=segment_causal_mask(mask.segments))
    if backend == "math":
        k, v = repeat_kv(k, n_rep, 1), repeat_kv(v, n_rep, 1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
        visible = mask.as_dense(q.shape[2], q.device)
        if visible is not None:
            scores = scores.masked_fill(~visible, float("-inf"))
        out = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype) @ v  # (B, H, Tq, D)
        return out.transpose(1, 2)
    # sdpa (and the cached path of xformers): GQA handled inside the kernel, no kv copy.
    if mask.seqlens is not None:
        return _sdpa_segments(q, k, v, mask.seqlens)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.dense, is_causal=mask.causal, enable_gqa=n_rep > 1
    )
    return out.transpose(1, 2)


def _flatten_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (1, H, B*T, D): rows end to end (segments never straddle two rows)."""
    b, h, t, d = x.shape
    return x.transpose(0, 1).reshape(1, h, b * t, d)


def _sdpa_segments(q, k, v, seqlens: list[int]) -> torch.Tensor:
    """Causal attention inside each segment of the flattened batch, one SDPA call per segment."""
    b, h, t, d = q.shape
    gqa = h != k.shape[1]
    # split (not slicing): its backward is one cat instead of a zero-filled buffer per segment
    pieces = zip(*(_flatten_rows(x).split(seqlens, dim=2) for x in (q, k, v)))
    outs = [F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=gqa) for qs, ks, vs in pieces]
    out = torch.cat(outs, dim=2).view(h, b, t, d)  # (H, B, T, D)
    return out.permute(1, 2, 0, 3)  # (B, T, H, D)


def xformers_bias(mask: AttentionMask, batch: int, seqlen: int):
    """The xformers attn_bias for this mask over the flattened (1, B*T) batch."""
    from xformers.ops import fmha

    seqlens = mask.seqlens if mask.seqlens is not None else [seqlen] * batch
    return fmha.attn_bias.BlockDiagonalCausalMask.from_seqlens(seqlens)


@torch.compiler.disable
def _xformers(q, k, v, mask: AttentionMask, n_rep: int) -> torch.Tensor:
    """Disabled for torch.compile: the mask's lengths list (any length) never enters a graph."""
    from xformers.ops import memory_efficient_attention

    b, h, t, d = q.shape
    # (B, H, T, D) -> (1, B*T, H, D): documents of all rows become one block-diagonal sequence.
    q, k, v = (x.transpose(1, 2).reshape(1, b * t, x.shape[1], d) for x in (q, k, v))
    k, v = repeat_kv(k, n_rep, 2), repeat_kv(v, n_rep, 2)
    out = memory_efficient_attention(q, k, v, attn_bias=xformers_bias(mask, b, t))
    return out.view(b, t, h, d)
