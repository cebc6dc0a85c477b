"""Distributed set-up and model wrapping: the model code knows nothing of parallelism.

Order matters and follows torchtitan: activation checkpointing, then torch.compile, each per
Transformer block, then the data-parallel wrapper (DDP around the whole model, or FSDP2
`fully_shard` on each block and then the root so parameters are gathered block by block).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class DistInfo:
    rank: int  # global rank
    local_rank: int  # rank on this node (picks the GPU)
    world_size: int  # ranks in total
    device: torch.device  # where this rank computes

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun world (nccl on GPU, gloo on CPU) or run as a single process.

    torchrun sets RANK/LOCAL_RANK/WORLD_SIZE. MMTOK_EXPECTED_WORLD_SIZE (set by
    slurm/pretrain.sh) makes a world that came up smaller than asked for an error, not a
    silently smaller run.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    expected = os.environ.get("MMTOK_EXPECTED_WORLD_SIZE")
    if expected is not None and int(expected) != world:
        raise RuntimeError(
            f"expected a world of {expected} ranks (nodes x processes per node) but torchrun "
            f"formed {world}; refusing to train on a partial world"
        )
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank, local_rank, world, dev)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """`train.device` -> the device: "auto" is this rank's GPU when CUDA is available, else the CPU."""
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 matmuls in hardware: AVX512-BF16 (AMD Zen 4+, Intel Cooper
    Lake) or AMX (Intel Sapphire Rapids+). Elsewhere bf16 is emulated and slower than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device computes it natively, fp32 (None) otherwise.

    "auto" picks bf16 on CUDA with bf16 and on CPUs with native bf16 (`cpu_has_native_bf16`):
    on this project's 2-core AMD EPYC (Zen 4) bf16 matmuls run at ~3x the fp32 rate and a
    demo_small training step takes ~30% less time (README, "Precision"). An explicit "bf16" or
    "fp32" is honoured anywhere.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def parallelize(
    model: nn.Module,
    info: DistInfo,
    parallelism: str,
    dtype: torch.dtype | None,
    compile: bool = False,
    activation_checkpointing: bool = False,
) -> nn.Module:
    """Wrap `model` (already on `info.device`) for training; returns the module to call."""
    blocks = model.layers  # nn.ModuleList of TransformerBlock
    if activation_checkpointing:
        # The recomputation must draw the forward's dropout masks again, or the gradients are wrong.
        rng = model.config.dropout > 0
        for i, block in enumerate(blocks):
            blocks[i] = checkpoint_wrapper(block, preserve_rng_state=rng)
    if compile:
        for block in blocks:
            block.compile()
    if parallelism == "fsdp":
        # FSDP2 casts parameters itself (bf16 compute, fp32 gradient reduction); no autocast.
        mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype else MixedPrecisionPolicy()
        for block in blocks:
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    if parallelism == "ddp":
        if info.world_size == 1:
            return model

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    raise ValueError(f"train.parallelism must be 'ddp' or 'fsdp', got {parallelism!r}")


def build_model(model_cfg, info: DistInfo, parallelism: str, dtype, compile: bool, activation_checkpointing: bool):
    """(bare model, module to train). Call with the same seed on every rank.

    DDP: every rank builds and initialises the full model (same seed, same weights).
    FSDP2 on several ranks: no rank holds a full fp32 copy on the device. Each builds the model
    on the meta device, shards it, allocates its shards; rank 0 alone initialises a full copy
    on the host, which is broadcast so every rank keeps its shard. The weights are exactly those
    DDP starts from (sharded random init would draw different numbers).
    """
    if parallelism != "fsdp" or info.world_size == 1:
        model = model_cfg.build().to(info.device)
        return model, parallelize(model, info, parallelism, dtype, compile, activation_checkpointing)

    full = model_cfg.build().state_dict() if info.is_main else {}
    with torch.device("meta"):
        model = model_cfg.build()
    wrapped = parallelize(model, info, parallelism, dtype, compile, activation_checkpointing)
    model.to_empty(device=info.device)
    with torch.no_grad():
        model.init_weights()  # recomputes the non-persistent RoPE tables; parameters come next
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return model, wrapped


def uses_autocast(parallelism: str) -> bool:
    """FSDP2's MixedPrecisionPolicy already runs the forward in bf16; DDP needs autocast."""
    return parallelism != "fsdp"
