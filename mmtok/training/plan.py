"""Memory and throughput plan of a resolved config under FSDP2 on N GPUs (`mmtok train --plan`).

Per GPU, in bytes, for P parameters sharded over N ranks (FSDP2 `fully_shard` on every block and
the root, as mmtok.training.parallelize does):

    parameters   4 P / N            fp32 masters (sharded)
                 + gathered         the compute-dtype copies FSDP2 all-gathers: the root (embedding,
                                    head, final norm) and two blocks (the current one and the
                                    prefetched next one)
    gradients    4 P / N            fp32, reduce-scattered (reduce_dtype=fp32)
                 + 4 x two blocks   unsharded fp32 gradients of the blocks being reduced
    optimizer    8 P / N            AdamW exp_avg and exp_avg_sq, fp32
                 + 4 x tensors      AdamW's per-tensor `step` scalar (every rank holds one per tensor)
    activations  what the forward saves for the backward, per token of one micro-batch (the
                 terms are in `layer_saved_bytes`), plus the loss head's peak; with activation
                 checkpointing, each block keeps only its input and one block is recomputed at a
                 time
    reserve      CUDA context, NCCL buffers, allocator fragmentation: RESERVE_GIB + 10% of the rest

The compute dtype is bf16 when train.precision is auto or bf16 (what a GPU run takes: FSDP2's
MixedPrecisionPolicy casts parameters, so activations are bf16; RMSNorm statistics and RoPE run in
fp32 and save fp32 copies), fp32 when it is fp32. Attention is the backend a GPU run takes
(model.attention=auto: xformers, which saves k and v repeated to every query head).

tests/test_training_plan.py checks parameter, gradient and optimizer bytes exactly (one AdamW
step, one rank) and the activation estimate against the peak that torch's MemTracker measures on
CPU, for the tiny and demo sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mmtok.config import RunConfig
from mmtok.model.config import ModelConfig
from mmtok.tokenizer.multimodal import MultimodalTokenizer

GIB = 2**30
RESERVE_GIB = 2.0  # CUDA context (~0.5 GiB), NCCL buffers and workspaces, per GPU
FRAGMENTATION = 0.10  # caching-allocator slack on top of the tensors themselves
DEFAULT_VOCAB = 12160  # 8,000 SentencePiece pieces + 4 codebooks of 1024 + specials (docs/training.md)


@dataclass
class MemoryPlan:
    gpus: int  # N: ranks the states are sharded over
    gpu_memory_gib: float  # memory of one GPU
    dtype: str  # compute dtype: bf16 or fp32
    attention: str  # the backend the estimate assumes
    activation_checkpointing: bool  # what the config says (both are reported below)
    parameters_gib: float  # fp32 shard + gathered compute-dtype copies
    gradients_gib: float  # fp32 shard + the unsharded gradients being reduced
    optimizer_gib: float  # AdamW states
    activations_gib: float  # with the config's activation checkpointing setting
    activations_no_checkpointing_gib: float  # every block's saved tensors
    activations_checkpointing_gib: float  # block inputs + one recomputed block
    reserve_gib: float  # context, NCCL, fragmentation
    total_gib: float  # per GPU, the config's setting
    fits: bool  # total_gib <= gpu_memory_gib


def compute_dtype_bytes(precision: str) -> int:
    """2 (bf16) unless train.precision is fp32: a GPU run at auto takes bf16."""
    return 4 if precision == "fp32" else 2


def layer_saved_bytes(m: ModelConfig, e: int, attention: str = "xformers") -> float:
    """Bytes one Transformer block saves for the backward, per token, compute dtype of e bytes.

    Counted from the ops in mmtok/model/transformer.py (fp32 = 4 bytes):
      2 RMSNorms    fp32 input copy (4 d) + rsqrt (4) + normed output (e d), each
      RoPE          fp32 copies of q and of its rotated half (8 d), and of k (8 kv)
      attention     xformers: (1, B*T, H, D) copies of q, k, v with k, v repeated to every query
                    head (e 3 d when grouped, e (d + 2 kv) without) + output (e d, also the wo
                    input) + log-sum-exp (4 H);
                    sdpa (per segment on CPU, or dense): q, k, v (e (d + 2 kv)) + output (e d) +
                    the wo input, a copy (e d) + log-sum-exp (4 H)
      SwiGLU        w1 x, silu(w1 x), w3 x, their product (4 e ffn)
      dropout       bool masks of the two branch outputs (2 d), when model.dropout > 0
    """
    d, kv, h, heads = m.dim, m.kv_heads * m.head_dim, m.hidden_dim, m.n_heads
    norms = 2 * (4 * d + 4 + e * d)
    rope = 8 * d + 8 * kv
    if attention == "xformers":
        kv_saved = d if m.kv_heads != m.n_heads else kv
        attn = e * (d + 2 * kv_saved) + e * d + 4 * heads
    else:
        attn = e * (d + 2 * kv) + 2 * e * d + 4 * heads
    ffn = 4 * e * h
    dropout = 2 * d if m.dropout > 0 else 0
    return norms + rope + attn + ffn + dropout


def head_bytes(m: ModelConfig, e: int) -> float:
    """Per token, outside the blocks: RoPE tables (2 x 4 head_dim), the final norm, and the loss
    head's peak: fp32 logits, cross-entropy's saved log-softmax and, in the backward, the
    gradients of both (4 x 4 V)."""
    d, v = m.dim, m.vocab_size
    return 8 * m.head_dim + (4 * d + 4 + e * d) + 16 * v + (d if m.dropout > 0 else 0)


def activation_bytes(m: ModelConfig, tokens: int, e: int, checkpointing: bool, attention: str = "xformers",
                     micro_batch: int = 1, seq_len: int | None = None) -> float:
    """Peak activation bytes of one micro-batch of `tokens` tokens (`micro_batch` rows of `seq_len`)."""
    layer = layer_saved_bytes(m, e, attention)
    mask = 0 if attention == "xformers" else micro_batch * (seq_len or m.max_seq_len) ** 2  # dense bool mask
    if checkpointing:  # each block keeps its input; the backward recomputes one block at a time,
        # after the loss head's gradients are gone
        return tokens * (m.n_layers * e * m.dim + max(layer, head_bytes(m, e))) + mask
    return tokens * (m.n_layers * layer + head_bytes(m, e)) + mask


def block_params(m: ModelConfig) -> int:
    return (m.num_params(embedding=False) - m.vocab_size * m.dim - m.dim) // m.n_layers


def state_bytes(m: ModelConfig, n_gpus: int, e: int) -> dict[str, float]:
    """Per-GPU parameter, gradient and optimizer bytes under FSDP2 on n_gpus (module docstring).
    With n_gpus=1 and fp32 this is exactly what one process holds after an AdamW step, minus the
    gathered copies and in-flight gradients that only sharding adds."""
    p = m.num_params()
    n_tensors = n_param_tensors(m)
    sharded = n_gpus > 1 or e != 4
    root = p - m.n_layers * block_params(m)
    gathered = e * (root + 2 * block_params(m)) if sharded else 0
    in_flight = 4 * 2 * block_params(m) if sharded else 0
    return {
        "parameters": 4 * p / n_gpus + gathered,
        "gradients": 4 * p / n_gpus + in_flight,
        "optimizer": 8 * p / n_gpus + 4 * n_tensors,
    }


def n_param_tensors(m: ModelConfig) -> int:
    """Parameter tensors: 9 per block (2 norms, 4 attention, 3 feed-forward), embedding, final norm,
    and the head unless tied."""
    return 9 * m.n_layers + 2 + (0 if m.tie_embeddings else 1)


def plan(cfg: RunConfig, gpus: int = 8, gpu_memory_gib: float = 80.0) -> dict:
    """The plan of a resolved config (model.vocab_size set) on `gpus` GPUs of `gpu_memory_gib`."""
    m, t = cfg.model, cfg.train
    seq_len = cfg.data.seq_len or m.max_seq_len
    if t.global_batch_tokens:
        global_batch = t.global_batch_tokens // seq_len
    else:
        global_batch = t.global_batch_size
    e = compute_dtype_bytes(t.precision)
    attention = "xformers" if m.attention in ("auto", "xformers") else m.attention
    micro_tokens = t.micro_batch_size * seq_len
    memory = memory_plan(m, gpus, gpu_memory_gib, e, attention, t.activation_checkpointing,
                         t.micro_batch_size, seq_len)
    divides = global_batch % (t.micro_batch_size * gpus) == 0
    return {
        "model": "FSDP2 (train.parallelism=fsdp) on every GPU count; see mmtok/training/plan.py",
        "config": {"dim": m.dim, "n_layers": m.n_layers, "n_heads": m.n_heads, "n_kv_heads": m.kv_heads,
                   "ffn_dim": m.hidden_dim, "vocab_size": m.vocab_size, "seq_len": seq_len,
                   "micro_batch_size": t.micro_batch_size, "precision": t.precision,
                   "parallelism": t.parallelism, "activation_checkpointing": t.activation_checkpointing},
        "parameters": m.num_params(),
        "parameters_without_embedding": m.num_params(embedding=False),
        "tokens_per_step": global_batch * seq_len,
        "tokens_per_micro_batch": micro_tokens,
        "grad_accum": global_batch // (t.micro_batch_size * gpus) if divides else None,
        "batch_splits_over_gpus": divides,
        "flops_per_token": m.flops_per_token(seq_len),
        "flops_per_step": m.flops_per_token(seq_len) * global_batch * seq_len,
        "memory_per_gpu": asdict(memory),
        "min_gpus_that_fit": min_gpus(cfg, gpu_memory_gib),
    }


def memory_plan(m: ModelConfig, gpus: int, gpu_memory_gib: float, e: int, attention: str, checkpointing: bool,
                micro_batch: int, seq_len: int) -> MemoryPlan:
    states = state_bytes(m, gpus, e)
    tokens = micro_batch * seq_len
    act = {ac: activation_bytes(m, tokens, e, ac, attention, micro_batch, seq_len) for ac in (False, True)}
    used = sum(states.values()) + act[checkpointing]
    reserve = RESERVE_GIB * GIB + FRAGMENTATION * used
    total = (used + reserve) / GIB
    r = lambda x: round(x / GIB, 3)  # noqa: E731
    return MemoryPlan(
        gpus=gpus, gpu_memory_gib=gpu_memory_gib, dtype="bf16" if e == 2 else "fp32", attention=attention,
        activation_checkpointing=checkpointing, parameters_gib=r(states["parameters"]),
        gradients_gib=r(states["gradients"]), optimizer_gib=r(states["optimizer"]),
        activations_gib=r(act[checkpointing]), activations_no_checkpointing_gib=r(act[False]),
        activations_checkpointing_gib=r(act[True]), reserve_gib=r(reserve), total_gib=round(total, 3),
        fits=total <= gpu_memory_gib,
    )


def min_gpus(cfg: RunConfig, gpu_memory_gib: float, limit: int = 4096) -> int | None:
    """The smallest GPU count that fits the config and splits its global batch; None if none up to `limit`."""
    m, t = cfg.model, cfg.train
    seq_len = cfg.data.seq_len or m.max_seq_len
    global_batch = t.global_batch_tokens // seq_len if t.global_batch_tokens else t.global_batch_size
    e = compute_dtype_bytes(t.precision)
    attention = "xformers" if m.attention in ("auto", "xformers") else m.attention
    for n in range(1, min(limit, global_batch // t.micro_batch_size) + 1):
        if global_batch % (t.micro_batch_size * n):
            continue
        if memory_plan(m, n, gpu_memory_gib, e, attention, t.activation_checkpointing,
                       t.micro_batch_size, seq_len).fits:
            return n
    return None


def format_table(p: dict) -> str:
    """The plan as a readable table (the JSON holds the same numbers)."""
    mem, c = p["memory_per_gpu"], p["config"]
    ac = "on" if mem["activation_checkpointing"] else "off"
    rows = [
        ("parameters", f"{p['parameters'] / 1e6:,.1f} M ({p['parameters_without_embedding'] / 1e6:,.1f} M without the input embedding)"),
        ("tokens per step", f"{p['tokens_per_step']:,} ({p['tokens_per_micro_batch']:,} per micro-batch, grad accumulation {p['grad_accum']})"),
        ("FLOPs per token", f"{p['flops_per_token'] / 1e9:,.3f} GFLOP (6N + attention at {c['seq_len']} tokens)"),
        ("FLOPs per step", f"{p['flops_per_step'] / 1e15:,.3f} PFLOP"),
        (f"per GPU, FSDP2 on {mem['gpus']} GPUs, {mem['dtype']}", ""),
        ("  parameters", f"{mem['parameters_gib']:.2f} GiB"),
        ("  gradients", f"{mem['gradients_gib']:.2f} GiB"),
        ("  optimizer (AdamW)", f"{mem['optimizer_gib']:.2f} GiB"),
        ("  activations, no checkpointing", f"{mem['activations_no_checkpointing_gib']:.2f} GiB"),
        ("  activations, checkpointing", f"{mem['activations_checkpointing_gib']:.2f} GiB"),
        ("  reserve (context, NCCL, slack)", f"{mem['reserve_gib']:.2f} GiB"),
        (f"  total (checkpointing {ac})", f"{mem['total_gib']:.2f} GiB of {mem['gpu_memory_gib']:g}: "
                                          + ("fits" if mem["fits"] else "DOES NOT FIT")),
        ("smallest GPU count that fits", str(p["min_gpus_that_fit"])),
    ]
    if c["parallelism"] == "ddp":
        rows.append(("note", "the config says train.parallelism=ddp: DDP replicates parameters, gradients "
                             "and optimizer state (16 P bytes per GPU); this plan is for train.parallelism=fsdp"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)


def plan_config(cfg: RunConfig, gpus: int = 8, gpu_memory_gib: float = 80.0) -> dict:
    """`plan` of a loaded config: resolved, and its vocabulary sized from model.vocab_size, else
    the tokenizer directory when `tokenizer=` names one, else DEFAULT_VOCAB (said in the result)."""
    cfg.resolve()
    if cfg.model.vocab_size is not None:
        source = "model.vocab_size"
    elif cfg.tokenizer and Path(cfg.tokenizer).is_dir():
        cfg.set_vocab_size(len(MultimodalTokenizer.from_pretrained(cfg.tokenizer)))
        source = f"tokenizer {cfg.tokenizer}"
    else:
        cfg.set_vocab_size(DEFAULT_VOCAB)
        source = f"default {DEFAULT_VOCAB} (no tokenizer= given)"
    return {**plan(cfg, gpus, gpu_memory_gib), "vocab_size_from": source}
