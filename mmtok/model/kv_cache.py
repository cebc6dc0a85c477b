"""Key/value cache for incremental decoding.

Slots are shared by all rows: slot s of every row was written by the same forward call, so a
batch of prompts of different lengths is left-padded to a common length. Each slot remembers the
doc id of the token that wrote it (-1 for padding), and a query sees a key only when the key's slot
is not later than its own and both carry the same doc id: padding is invisible to real tokens,
exactly as in a packed forward without cache (mmtok/model/attention.py).
"""

from __future__ import annotations

import torch

from mmtok.model.attention import AttentionMask


class KVCache:
    def __init__(self, n_layers: int, batch: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype=torch.float32, device=None):
        shape = (n_layers, batch, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, Hkv, S, D)
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, Hkv, S, D)
        self.doc = torch.full((batch, max_len), -1, dtype=torch.int32, device=device)  # (B, S)
        self.length = 0  # slots filled by completed forward calls
        self._pending = 0  # tokens of the forward call in progress

    @classmethod
    def for_model(cls, config, batch: int, max_len: int | None = None, dtype=torch.float32, device=None):
        """Cache sized for a `ModelConfig` (max_len defaults to its max_seq_len)."""
        return cls(config.n_layers, batch, max_len or config.max_seq_len, config.kv_heads,
                   config.head_dim, dtype=dtype, device=device)

    def expand(self, batch: int, max_len: int | None = None) -> KVCache:
        """A new cache of `batch` rows, each starting from this one-row cache's filled slots (a
        shared prefix, e.g. one clip's prompt, continued by several texts at once)."""
        if self.doc.shape[0] != 1 or self._pending:
            raise ValueError("only a committed one-row cache can be expanded")
        max_len = max_len or self.max_len
        if max_len < self.length:
            raise ValueError(f"max_len {max_len} < the {self.length} filled slots")
        n_layers, _, heads, _, dim = self.k.shape
        out = KVCache(n_layers, batch, max_len, heads, dim, dtype=self.k.dtype, device=self.k.device)
        n = self.length
        out.k[:, :, :, :n] = self.k[:, :, :, :n]  # broadcast over the new rows
        out.v[:, :, :, :n] = self.v[:, :, :, :n]
        out.doc[:, :n] = self.doc[:, :n]
        out.length = n
        return out

    @property
    def max_len(self) -> int:
        return self.doc.shape[1]

    def begin(self, doc_ids: torch.Tensor | None, n_tokens: int) -> AttentionMask:
        """Start a forward call of `n_tokens` new tokens per row; return its attention mask."""
        start, end = self.length, self.length + n_tokens
        if end > self.max_len:
            raise ValueError(f"KV cache full: {start} + {n_tokens} tokens > max_len {self.max_len}")
        self.doc[:, start:end] = 0 if doc_ids is None else doc_ids.to(torch.int32)
        self._pending = n_tokens
        keys = self.doc[:, :end]  # (B, S)
        if start == 0 and bool((keys == keys[:, :1]).all()):
            return AttentionMask(causal=True)  # a prefill of one document per row
        if n_tokens == 1 and bool((keys == keys[:, -1:]).all()):
            return AttentionMask()  # one decode step that may see every slot: no mask at all
        queries = self.doc[:, start:end]  # (B, Tq)
        same_doc = queries[:, :, None] == keys[:, None, :]  # (B, Tq, S)
        q_slot = torch.arange(start, end, device=keys.device)[:, None]
        not_later = torch.arange(end, device=keys.device)[None, :] <= q_slot  # (Tq, S)
        return AttentionMask(dense=(same_doc & not_later)[:, None])  # (B, 1, Tq, S)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this layer's new k/v (B, Hkv, T, D); return all its keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, Hkv, S, D)

    def commit(self) -> None:
        """Finish the forward call: its tokens become part of every later call's context."""
        self.length += self._pending
        self._pending = 0
