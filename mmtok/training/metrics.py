"""Throughput and utilisation: tokens/s, step time, MFU against a per-device peak, memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

from mmtok.atomic import write_text_atomic

# Dense (no sparsity) peak FLOP/s per device from the vendors' data sheets, by name substring.
PEAK_FLOPS = {
    "H200": {torch.bfloat16: 989e12, torch.float32: 67e12},
    "H100": {torch.bfloat16: 989e12, torch.float32: 67e12},  # SXM; PCIe is 756e12 bf16
    "A100": {torch.bfloat16: 312e12, torch.float32: 19.5e12},
    "L40S": {torch.bfloat16: 362e12, torch.float32: 91.6e12},
    "A10G": {torch.bfloat16: 70e12, torch.float32: 35e12},
    "V100": {torch.bfloat16: 125e12, torch.float32: 15.7e12},  # no bf16 tensor cores: fp16 peak
}
CPU_PEAK_CACHE = Path(os.environ.get("MMTOK_CACHE", Path.home() / ".cache" / "mmtok")) / "cpu_peak.json"


def measure_cpu_matmul_peak(n: int = 1024, seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    """Best `dtype` matmul FLOP/s of ONE thread (restores the thread count afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: first call allocates and picks kernels
        best, t_end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(threads)
    return best


def cpu_peak_flops(dtype: torch.dtype | None = None) -> float:
    """Peak of this process: threads x one core's measured matmul peak at `dtype` (None = fp32).

    One core is measured (a multi-thread measurement on a shared box mostly measures the other
    jobs), once per machine, then read from ~/.cache/mmtok/cpu_peak.json.
    $MMTOK_CPU_PEAK_FLOPS (for the whole process) overrides it.
    """
    if os.environ.get("MMTOK_CPU_PEAK_FLOPS"):
        return float(os.environ["MMTOK_CPU_PEAK_FLOPS"])
    dtype = dtype or torch.float32
    key = f"{platform.processor() or platform.machine()}|{os.cpu_count()}cpus|per-core"
    key += "" if dtype == torch.float32 else f"|{str(dtype).removeprefix('torch.')}"
    try:
        cache = json.loads(CPU_PEAK_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = measure_cpu_matmul_peak(dtype=dtype)
        write_text_atomic(CPU_PEAK_CACHE, json.dumps(cache, indent=1))
    return cache[key] * torch.get_num_threads()


def peak_flops(device: torch.device, dtype: torch.dtype | None) -> float | None:
    """Peak FLOP/s of one device at `dtype` (None = fp32); None for an unknown GPU."""
    if device.type == "cpu":
        return cpu_peak_flops(dtype)
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            return peaks[dtype or torch.float32]
    return None


def memory_stats(device: torch.device) -> dict[str, float]:
    """Peak memory in GiB: CUDA allocator peak on GPU, process max RSS on CPU."""
    if device.type == "cuda":
        return {"memory/max_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30}
    return {"memory/max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


class Throughput:
    """Per-step timing -> tokens/s (all ranks), step time and MFU."""

    def __init__(self, peak_per_device: float | None, world_size: int):
        self.peak = peak_per_device
        self.world_size = world_size
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def stop(self, tokens_global: int, flops_global: float) -> dict[str, float]:
        """`tokens_global`: input positions processed this step by all ranks (padding included);
        `flops_global`: their training FLOPs (ModelConfig.flops of every micro-batch, all ranks)."""
        dt = time.perf_counter() - self.t0
        tps = tokens_global / dt
        out = {"perf/step_time_s": dt, "perf/tokens_per_s": tps, "perf/tokens_per_s_per_device": tps / self.world_size}
        if self.peak:
            out["perf/mfu"] = flops_global / dt / (self.peak * self.world_size)
        return out
