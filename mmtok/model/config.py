"""`ModelConfig`: the shape of the decoder, its validation, size and cost.

One dataclass describes the model completely (checkpoints store it as a dict, export maps it to a
`LlamaConfig`); named presets (tiny, demo, 125m, ...) are YAML files in configs/ that fill it in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from mmtok.model.transformer import Transformer

ATTENTION_BACKENDS = ("auto", "xformers", "sdpa", "math")


@dataclass
class ModelConfig:
    vocab_size: int | None = None  # embedding rows; None = take len(tokenizer) (see `for_vocab`)
    dim: int = 256  # model width (hidden size)
    n_layers: int = 4  # Transformer blocks
    n_heads: int = 4  # query heads; head_dim = dim // n_heads
    n_kv_heads: int | None = None  # key/value heads for grouped-query attention; None = n_heads
    ffn_dim: int | None = None  # SwiGLU hidden width; None = 8/3 * dim rounded up to 64
    max_seq_len: int = 2048  # longest sequence (RoPE table size, KV-cache bound)
    rope_theta: float = 10000.0  # RoPE base wavelength
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = False  # output projection shares the input embedding matrix
    attention: str = "auto"  # backend: auto (xformers on CUDA, else sdpa) | xformers | sdpa | math
    init_std: float = 0.02  # std of the normal init; output projections get std / sqrt(2 n_layers)
    dropout: float = 0.0  # training only: drop rate on the embeddings and on each attention / FFN
    #   output before it joins the residual stream (GPT-2's resid/embd dropout); 0 = none, as LLaMA

    # ---- derived shape ------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def hidden_dim(self) -> int:
        """SwiGLU width: explicit, or LLaMA's 2/3 * 4 * dim rounded up to a multiple of 64."""
        if self.ffn_dim is not None:
            return self.ffn_dim
        return -(-(8 * self.dim // 3) // 64) * 64

    # ---- validation ---------------------------------------------------------------------------
    def validate(self) -> ModelConfig:
        """Raise ValueError naming the first inconsistent field; return self when all is well."""

        def fail(msg: str):
            raise ValueError(f"invalid ModelConfig: {msg}")

        if self.vocab_size is None:
            fail("vocab_size is not set; use config.for_vocab(len(tokenizer))")
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len"):
            if int(getattr(self, name)) <= 0:
                fail(f"{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            fail(f"n_heads={self.n_heads} does not divide dim={self.dim}")
        if self.head_dim % 2:
            fail(f"head_dim={self.head_dim} (dim / n_heads) must be even for RoPE")
        if self.kv_heads <= 0 or self.n_heads % self.kv_heads:
            fail(f"n_kv_heads={self.kv_heads} must be positive and divide n_heads={self.n_heads}")
        if self.hidden_dim <= 0:
            fail(f"ffn_dim must be positive, got {self.ffn_dim}")
        if self.attention not in ATTENTION_BACKENDS:
            fail(f"attention={self.attention!r}; choose one of {ATTENTION_BACKENDS}")
        if self.rope_theta <= 0 or self.norm_eps <= 0 or self.init_std <= 0:
            fail("rope_theta, norm_eps and init_std must be positive")
        if not 0.0 <= self.dropout < 1.0:
            fail(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def for_vocab(self, tokenizer_vocab: int) -> ModelConfig:
        """This config sized for a tokenizer of `tokenizer_vocab` ids (`len(tok)`).

        An unset vocab_size takes the tokenizer's; a set one must hold every tokenizer id (a
        larger one is allowed, e.g. rounded up for kernels); a smaller one is an error.
        """
        if self.vocab_size is None:
            return replace(self, vocab_size=int(tokenizer_vocab)).validate()
        if self.vocab_size < tokenizer_vocab:
            raise ValueError(
                f"invalid ModelConfig: vocab_size={self.vocab_size} is smaller than the "
                f"tokenizer's {tokenizer_vocab} ids; set vocab_size >= {tokenizer_vocab} or leave it unset"
            )
        return self.validate()

    # ---- storage ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    # ---- size and cost ------------------------------------------------------------------------
    def num_params(self, embedding: bool = True) -> int:
        """Parameter count. `embedding=False` leaves out the input lookup table but keeps the
        output head (a matmul per token like any layer, tied or not): the N of 6N FLOPs."""
        d, kv = self.dim, self.kv_heads * self.head_dim
        attn = 2 * d * d + 2 * d * kv  # wq, wo, wk, wv
        ffn = 3 * d * self.hidden_dim  # w1 (gate), w3 (up), w2 (down)
        body = self.n_layers * (attn + ffn + 2 * d) + d  # + two RMSNorms per block, final norm
        table = self.vocab_size * d
        if not embedding:
            return body + table  # the head
        return body + table + (0 if self.tie_embeddings else table)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6 N + 12 L d T (PaLM appendix B).

        N counts every matmul weight (the output head too, tied or not); the second term is the
        QK^T and AV products at context length T (full, not halved for causality, as PaLM and
        torchtitan count it, so MFU numbers compare with theirs).
        """
        t = self.max_seq_len if seq_len is None else seq_len
        n = self.num_params(embedding=False)
        return 6.0 * n + 12.0 * self.n_layers * self.dim * t

    def flops(self, seqlens) -> float:
        """Training FLOPs of packed rows whose documents have these lengths: 6 N per token plus
        attention at each document's own context (12 L d n per token of an n-token document), which
        is what the per-document kernels compute (xformers' block-diagonal bias, the sdpa backend's
        per-segment calls). One document of T tokens gives flops_per_token(T) * T."""
        return float(sum(self.flops_per_token(t) * t for t in seqlens))

    def build(self):
        """The `Transformer` this config describes (weights initialised, on CPU, fp32)."""
        return Transformer(self)
