"""The pretraining loop: `train(config)` is what `train/pretrain.py` and `mmtok train` call.

One optimizer step consumes the GLOBAL batch: `grad_accum` micro-batches on each of the
`world_size` ranks, with grad_accum = global_batch / (micro_batch * world_size), so changing the
number of GPUs changes neither the batch nor the loss. Every micro-batch's summed cross-entropy
is divided by the number of target tokens in the whole global batch (counted up front and
all-reduced), so the gradient equals that of one big batch exactly, however it is split.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mmtok import checkpoint as ckpt
from mmtok.config import ConfigError, RunConfig
from mmtok.data.batch import PackedBatch
from mmtok.loss import batch_loss
from mmtok.model.attention import seqlens_of
from mmtok.tokenizer.multimodal import MultimodalTokenizer
from mmtok.training.callbacks import EvalCallback, run_evals
from mmtok.training.metrics import Throughput, memory_stats, peak_flops
from mmtok.training.parallelize import DistInfo, autocast_dtype, build_model, init_distributed, uses_autocast
from mmtok.training.wandb_log import WandbLogger

log = logging.getLogger("mmtok.train")


@dataclass
class BatchPlan:
    seq_len: int  # tokens per sequence (row)
    global_batch: int  # sequences per optimizer step, all ranks
    micro_batch: int  # sequences per forward on one rank
    grad_accum: int  # micro-batches per rank per step


def plan_batches(cfg: RunConfig, world_size: int) -> BatchPlan:
    t, micro = cfg.data.seq_len, cfg.train.micro_batch_size
    if cfg.train.global_batch_tokens:
        if cfg.train.global_batch_tokens % t:
            raise ConfigError(f"train.global_batch_tokens={cfg.train.global_batch_tokens} is not a multiple of data.seq_len={t}")
        global_batch = cfg.train.global_batch_tokens // t
    elif cfg.train.global_batch_size:
        global_batch = cfg.train.global_batch_size
    else:
        raise ConfigError("set train.global_batch_size (sequences) or train.global_batch_tokens")
    if global_batch % (micro * world_size):
        raise ConfigError(
            f"global batch of {global_batch} sequences cannot be split into micro-batches of "
            f"{micro} on {world_size} rank(s); make it a multiple of {micro * world_size}"
        )
    return BatchPlan(t, global_batch, micro, global_batch // (micro * world_size))


class StopSignal:
    """SIGTERM / SIGUSR1 (Slurm preemption warning) -> finish the step, checkpoint, exit cleanly."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        # Handlers can only be installed from the main thread (train() called elsewhere: none).
        main = threading.current_thread() is threading.main_thread()
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS} if main else {}

    def _handle(self, signum, frame):
        self.received = signum

    def any_rank(self, device, out_of_time: bool) -> tuple[bool, bool]:
        """(signalled, out of time) on ANY rank: all ranks must stop at the same step."""
        flags = torch.tensor([float(self.received is not None), float(out_of_time)], device=device)
        if dist.is_initialized():
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return bool(flags[0]), bool(flags[1])

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _no_grad_sync(model, is_last: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(is_last)
        return contextlib.nullcontext()
    if hasattr(model, "no_sync") and not is_last:  # DDP
        return model.no_sync()
    return contextlib.nullcontext()


def _grad_norm(model, max_norm: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else math.inf)
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor over the shards
        norm = norm.full_tensor()
    return float(norm)


class MetricsFile:
    """Rank 0's OUT/metrics.jsonl: one JSON line per step (resumed runs append)."""

    def __init__(self, path: Path):
        self.f = open(path, "a", buffering=1)

    def write(self, record: dict) -> None:
        self.f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.f.close()


def load_tokenizer(cfg: RunConfig) -> MultimodalTokenizer:
    if not cfg.tokenizer:
        raise ConfigError("no tokenizer: pass tokenizer=DIR (a MultimodalTokenizer directory)")
    if not Path(cfg.tokenizer).is_dir():
        raise ConfigError(f"tokenizer directory {cfg.tokenizer} does not exist")
    return MultimodalTokenizer.from_pretrained(cfg.tokenizer)


def train(cfg: RunConfig, eval_callbacks: list[EvalCallback] | None = None, data: Any = None) -> dict:
    """Train `cfg` to cfg.train.max_steps (resuming if a checkpoint exists); return last metrics.

    `eval_callbacks`: run every `train.eval_interval` steps (the entry points pass
    `mmtok.training.evals.default_evals(cfg)`: validation loss and sample captions); None = none.
    `data`: optional iterable of PackedBatch with state_dict()/load_state_dict() replacing
    `cfg.data.build(...)`.
    """
    info = init_distributed(cfg.train.device)
    logging.basicConfig(level=logging.INFO, format=f"[rank{info.rank}] %(asctime)s %(message)s")
    stop = StopSignal()
    try:
        return Trainer(cfg, info, eval_callbacks or [], data).fit(stop)
    finally:
        stop.restore()
        if dist.is_initialized():
            dist.destroy_process_group()


class Trainer:
    """One training run on this rank: what it builds, how it resumes, steps, logs and saves."""

    def __init__(self, cfg: RunConfig, info: DistInfo, eval_callbacks: list[EvalCallback], data: Any = None):
        self.cfg, self.info, self.eval_callbacks = cfg.resolve(), info, eval_callbacks
        self.out_dir = Path(cfg.train.out_dir)
        self.tokenizer = load_tokenizer(cfg)
        cfg.set_vocab_size(len(self.tokenizer))
        self.plan = plan_batches(cfg, info.world_size)
        if info.is_main:
            self.prepare_run_dir()
        if dist.is_initialized():
            dist.barrier()
        # Same seed on every rank: replicas (DDP) and shards (FSDP) start from one initialisation.
        seed_everything(cfg.train.seed)
        self.dtype = autocast_dtype(cfg.train.precision, info.device)
        t = cfg.train
        self.model, self.wrapped = build_model(cfg.model, info, t.parallelism, self.dtype, t.compile,
                                               t.activation_checkpointing)
        self.autocast = (
            torch.autocast(info.device.type, dtype=self.dtype)
            if self.dtype is not None and uses_autocast(t.parallelism)
            else contextlib.nullcontext()
        )
        self.optimizer = cfg.optim.build(self.wrapped)
        self.scheduler = cfg.schedule.build(self.optimizer, t.max_steps)
        self.data = data if data is not None else cfg.data.build(self.tokenizer, rank=info.rank,
                                                                 world_size=info.world_size)
        self.checkpointer = ckpt.Checkpointer(self.out_dir, t.keep_last_k, t.async_checkpoint, t.verify_checkpoints)
        self.step = self.resume()
        self.logger = self.metrics_file = None
        if info.is_main:
            self.logger = WandbLogger(cfg.wandb, cfg.to_dict(), self.out_dir)
            self.metrics_file = MetricsFile(self.out_dir / "metrics.jsonl")
            cfg.save(self.out_dir / "config.yaml")
            p = self.plan
            log.info("model %.2fM params | global batch %d x %d tokens = %d micro x %d accum x %d ranks | %s",
                     self.model.num_params() / 1e6, p.global_batch, p.seq_len, p.micro_batch, p.grad_accum,
                     info.world_size, t.parallelism)
        self.throughput = Throughput(peak_flops(info.device, self.dtype), info.world_size)

    def prepare_run_dir(self) -> None:
        """Rank 0: the output directory, with interrupted saves removed and the run's own copy of
        the tokenizer (checkpoints hard-link to it)."""
        out_dir = self.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "COMPLETED").unlink(missing_ok=True)  # written again when max_steps is reached
        for stale in ckpt.remove_partial_checkpoints(out_dir):
            log.warning("removed %s (a save that was interrupted)", stale)
        tok_copy = out_dir / ckpt.TOKENIZER_DIR
        if not tok_copy.exists():
            shutil.copytree(self.cfg.tokenizer, out_dir / ".tokenizer.tmp", dirs_exist_ok=True)
            (out_dir / ".tokenizer.tmp").rename(tok_copy)

    def resume(self) -> int:
        """The step to start from: a checkpoint's (model, optimizer, schedule, loader, RNG
        restored), or 0 with a fresh seed stream for data order and dropout."""
        cfg, resume = self.cfg, self.cfg.train.resume
        if resume == "never":
            path = None
        elif resume == "auto":
            path = ckpt.latest_checkpoint(self.out_dir)
        else:
            path = ckpt.resolve_checkpoint(resume)
        if path is None:
            seed_everything(cfg.train.seed + 1 + self.info.rank)  # independent of how much init consumed
            return 0
        # The layout before any tensor: a checkpoint from another tokenizer would otherwise fail on shapes.
        state = self.checkpointer.load(path, self.wrapped, self.optimizer, self.scheduler, check_state=lambda s:
                                       self.tokenizer.layout.require(s.get("layout_hash"), f"checkpoint {path}"))
        self.data.load_state_dict(state["data"])
        log.info("resumed from %s (step %d)", path, state["step"])
        return state["step"]

    def save(self) -> None:
        """Checkpoint this step (logged by the checkpointer once complete; async: later)."""
        self.checkpointer.save(
            self.step, self.wrapped, self.optimizer, self.scheduler,
            {"data": self.data.state_dict(), "layout_hash": self.tokenizer.layout.hash, "config": self.cfg.to_dict()},
            self.cfg.to_yaml(), self.out_dir / ckpt.TOKENIZER_DIR,
        )

    def train_step(self, batches: Iterator[PackedBatch]) -> dict:
        """One optimizer step over the global batch; returns its metrics record."""
        device, plan = self.info.device, self.plan
        self.throughput.start()
        host_micro = [next(batches) for _ in range(plan.grad_accum)]
        # MFU counts attention at each document's own length (packed rows of short documents do less
        # work). Both counts below are read on the host, before the copy: no device sync per step
        step_flops = sum(self.cfg.model.flops(seqlens_of(b.doc_ids)) for b in host_micro)
        micro = [b.to(device) for b in host_micro]
        n_target = torch.tensor(float(sum(int(b.loss_mask.sum()) for b in host_micro)), device=device)
        if dist.is_initialized():
            dist.all_reduce(n_target)
        n_target = n_target.clamp(min=1.0)
        sums = torch.zeros(7, dtype=torch.float64, device=device)
        sums[6] = step_flops  # all-reduced with the loss sums below
        for i, batch in enumerate(micro):
            with _no_grad_sync(self.wrapped, is_last=i == len(micro) - 1):
                loss, s = batch_loss(self.wrapped, batch, n_target, self.info.world_size, self.autocast)
                loss.backward()
            sums[:6] += s
        grad_norm = _grad_norm(self.wrapped, self.cfg.optim.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if dist.is_initialized():
            dist.all_reduce(sums)
        total, text, audio, n_all, n_text, n_audio, flops = sums.tolist()
        record = {
            "step": self.step,
            "loss": total / max(n_all, 1),
            "loss/text": text / n_text if n_text else None,
            "loss/audio": audio / n_audio if n_audio else None,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens/target": n_all,
            **self.throughput.stop(plan.global_batch * plan.seq_len, flops),
            **memory_stats(device),
        }
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"loss is {record['loss']} at step {self.step}; lower optim.lr or check the data")
        return record

    def log_step(self, record: dict) -> None:
        """Rank 0: every step to metrics.jsonl; every log_interval steps to wandb and the log."""
        if not self.info.is_main:
            return
        self.metrics_file.write(record)
        step = record["step"]
        if step % self.cfg.train.log_interval == 0 or step == 1:
            self.logger.log({k: v for k, v in record.items() if v is not None and k != "step"}, step)
            log.info(
                "step %d | loss %.4f text %s audio %s | lr %.2e | gnorm %.2f | %.0f tok/s | mfu %.1f%%",
                step, record["loss"], _fmt(record["loss/text"]), _fmt(record["loss/audio"]), record["lr"],
                record["grad_norm"], record["perf/tokens_per_s"], 100 * record.get("perf/mfu", 0.0),
            )

    def fit(self, stop: StopSignal) -> dict:
        """Step to max_steps, a signal, or max_minutes; checkpoint on the way and at the end."""
        t, record, out_of_time = self.cfg.train, {}, False
        batches: Iterator[PackedBatch] = iter(self.data)
        saved_at, t_start = self.step, time.monotonic()
        self.wrapped.train()
        while self.step < t.max_steps:
            record = self.train_step(batches)
            self.log_step(record)
            if t.eval_interval and self.step % t.eval_interval == 0 and self.eval_callbacks:
                run_evals(self.eval_callbacks, self.wrapped, self.tokenizer, self.step, self.logger, self.out_dir)
            over = t.max_minutes is not None and time.monotonic() - t_start > 60 * t.max_minutes
            signalled, out_of_time = stop.any_rank(self.info.device, over)
            self.checkpointer.poll()  # finalize a background save once every rank has written it
            if signalled or out_of_time or self.step % t.checkpoint_interval == 0 or self.step == t.max_steps:
                self.save()
                saved_at = self.step
            if signalled:
                log.info("received signal %s: checkpointed step %d, exiting", stop.received, self.step)
                break
            if out_of_time:
                log.info("train.max_minutes=%g reached: checkpointed step %d, finishing", t.max_minutes, self.step)
                break
        if saved_at != self.step:
            self.save()
        final = self.checkpointer.close()  # waits for a background save
        if t.consolidate_final and final is not None and (self.step >= t.max_steps or out_of_time):
            if self.info.is_main:
                log.info("consolidated weights %s", ckpt.consolidate(final, verify=False))
            if dist.is_initialized():
                dist.barrier()
        if self.info.is_main:
            self.metrics_file.close()
            self.logger.finish()
            if self.step >= t.max_steps or out_of_time:
                (self.out_dir / "COMPLETED").write_text(f"{self.step}\n")
        if dist.is_initialized():
            dist.barrier()  # rank 0 may still be closing wandb; gloo aborts if a peer leaves first
        return record


def _fmt(x):
    return "-" if x is None else f"{x:.4f}"
