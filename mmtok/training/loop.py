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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mmtok.config import ConfigError, RunConfig
from mmtok.data.batch import PackedBatch
from mmtok.tokenizer.layout import IGNORE_INDEX, Modality
from mmtok.training import checkpoint as ckpt
from mmtok.training.metrics import Throughput, memory_stats, peak_flops
from mmtok.training.parallelize import DistInfo, autocast_dtype, build_model, init_distributed, uses_autocast

log = logging.getLogger("mmtok.train")


@dataclass
class SampleTable:
    """What an eval callback returns to be logged as a wandb table (e.g. sample captions)."""

    columns: list[str]
    rows: list[list[Any]]


# An eval callback gets (model, tokenizer, step) on EVERY rank (FSDP forwards are collective) and
# returns {name: number or SampleTable}; rank 0 logs the result.
EvalCallback = Callable[[torch.nn.Module, Any, int], dict[str, Any]]


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


def step_loss(model, batch: PackedBatch, n_target_global: torch.Tensor, world_size: int, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-ready loss of one micro-batch and its detached per-modality CE sums.

    Returns (loss, sums) where sums = [all, text, audio, n_all, n_text, n_audio] (float64).
    The loss is scaled by world_size because DDP and FSDP average gradients over ranks.
    """
    with autocast:
        logits = model(batch.tokens, batch.positions, batch.doc_ids)  # (B, T, V) fp32
    ce = F.cross_entropy(
        logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B*T,), 0 where ignored
    loss = ce.sum() * world_size / n_target_global
    with torch.no_grad():
        mask = batch.loss_mask.flatten()
        modality = batch.modality.flatten()
        text = mask & (modality == Modality.TEXT)
        audio = mask & (modality == Modality.AUDIO)
        ce64 = ce.detach().double()
        sums = torch.stack([
            ce64.sum(), ce64[text].sum(), ce64[audio].sum(),
            mask.sum().double(), text.sum().double(), audio.sum().double(),
        ])
    return loss, sums


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


def _load_tokenizer(cfg: RunConfig):
    from mmtok.tokenizer.multimodal import MultimodalTokenizer

    if not cfg.tokenizer:
        raise ConfigError("no tokenizer: pass tokenizer=DIR (a MultimodalTokenizer directory)")
    if not Path(cfg.tokenizer).is_dir():
        raise ConfigError(f"tokenizer directory {cfg.tokenizer} does not exist")
    return MultimodalTokenizer.from_pretrained(cfg.tokenizer)


def _resume_from(cfg: RunConfig, out_dir: Path) -> Path | None:
    if cfg.train.resume == "never":
        return None
    if cfg.train.resume == "auto":
        return ckpt.latest_checkpoint(out_dir)
    return ckpt.resolve_checkpoint(cfg.train.resume)


def train(cfg: RunConfig, eval_callbacks: list[EvalCallback] | None = None, data: Any = None) -> dict:
    """Train `cfg` to cfg.train.max_steps (resuming if a checkpoint exists); return last metrics.

    `eval_callbacks`: None = validation loss and sample captions when data.valid_shards is set
    (`mmtok.training.evals.default_evals`). `data`: optional iterable of PackedBatch with
    state_dict()/load_state_dict() replacing `cfg.data.build(...)`.
    """
    info = init_distributed(cfg.train.device)
    logging.basicConfig(level=logging.INFO, format=f"[rank{info.rank}] %(asctime)s %(message)s")
    stop = StopSignal()
    try:
        return _train(cfg, info, eval_callbacks, data, stop)
    finally:
        stop.restore()
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: RunConfig, info: DistInfo, eval_callbacks, data, stop: StopSignal) -> dict:
    out_dir = Path(cfg.train.out_dir)
    tokenizer = _load_tokenizer(cfg)
    cfg.set_vocab_size(len(tokenizer))
    plan = plan_batches(cfg, info.world_size)
    cfg.data.batch_size = plan.micro_batch  # the loader's batches are our micro-batches
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "COMPLETED").unlink(missing_ok=True)  # written again when max_steps is reached
        for stale in ckpt.remove_partial_checkpoints(out_dir):
            log.warning("removed %s (a save that was interrupted)", stale)
        tok_copy = out_dir / ckpt.TOKENIZER_DIR
        if not tok_copy.exists():  # the run's own copy: checkpoints hard-link to it
            shutil.copytree(cfg.tokenizer, out_dir / ".tokenizer.tmp", dirs_exist_ok=True)
            (out_dir / ".tokenizer.tmp").rename(tok_copy)
    if dist.is_initialized():
        dist.barrier()

    # Same seed on every rank: replicas (DDP) and shards (FSDP) start from one initialisation.
    seed_everything(cfg.train.seed)
    dtype = autocast_dtype(cfg.train.precision, info.device)
    model, wrapped = build_model(
        cfg.model, info, cfg.train.parallelism, dtype, cfg.train.compile, cfg.train.activation_checkpointing
    )
    autocast = (
        torch.autocast(info.device.type, dtype=dtype)
        if dtype is not None and uses_autocast(cfg.train.parallelism)
        else contextlib.nullcontext()
    )
    optimizer = cfg.optim.build(wrapped)
    scheduler = cfg.schedule.build(optimizer, cfg.train.max_steps)
    if data is None:
        data = cfg.data.build(tokenizer, rank=info.rank, world_size=info.world_size)
    if eval_callbacks is None:
        from mmtok.training.evals import default_evals

        eval_callbacks = default_evals(cfg, tokenizer)

    step = 0
    resume = _resume_from(cfg, out_dir)
    if resume is not None:
        # Layout first: a checkpoint from another tokenizer would otherwise fail on shapes.
        tokenizer.layout.require(ckpt.read_train_state(resume).get("layout_hash"), f"checkpoint {resume}")
        state = ckpt.load_checkpoint(resume, wrapped, optimizer, scheduler)
        data.load_state_dict(state["data"])
        step = state["step"]
        log.info("resumed from %s (step %d)", resume, step)
    else:
        # Fresh seed stream for data order/dropout, independent of how much init consumed.
        seed_everything(cfg.train.seed + 1 + info.rank)

    logger = metrics_file = None
    if info.is_main:
        from mmtok.training.wandb_log import WandbLogger

        logger = WandbLogger(cfg.wandb, cfg.to_dict(), out_dir)
        metrics_file = MetricsFile(out_dir / "metrics.jsonl")
        cfg.save(out_dir / "config.yaml")
        log.info(
            "model %.2fM params | global batch %d x %d tokens = %d micro x %d accum x %d ranks | %s",
            model.num_params() / 1e6, plan.global_batch, plan.seq_len, plan.micro_batch,
            plan.grad_accum, info.world_size, cfg.train.parallelism,
        )
    throughput = Throughput(peak_flops(info.device, dtype), info.world_size)

    def save(at_step: int):
        path = ckpt.save_checkpoint(
            out_dir, at_step, wrapped, optimizer, scheduler,
            {"data": data.state_dict(), "layout_hash": tokenizer.layout.hash, "config": cfg.to_dict()},
            cfg.to_yaml(), out_dir / ckpt.TOKENIZER_DIR, cfg.train.keep_last_k,
        )
        if path is not None:
            log.info("saved checkpoint %s", path)

    batches: Iterator[PackedBatch] = iter(data)
    record: dict = {}
    saved_at = step
    out_of_time = False
    t_start = time.monotonic()
    wrapped.train()
    while step < cfg.train.max_steps:
        throughput.start()
        host_micro = [next(batches) for _ in range(plan.grad_accum)]
        # MFU counts attention at each document's own length (packed rows of short documents do less
        # work). Both counts below are read on the host, before the copy: no device sync per step
        step_flops = sum(cfg.model.flops(b.seqlens()) for b in host_micro)
        micro = [b.to(info.device) for b in host_micro]
        n_target = torch.tensor(float(sum(int(b.loss_mask.sum()) for b in host_micro)), device=info.device)
        if dist.is_initialized():
            dist.all_reduce(n_target)
        n_target = n_target.clamp(min=1.0)
        sums = torch.zeros(7, dtype=torch.float64, device=info.device)
        sums[6] = step_flops  # all-reduced with the loss sums below
        for i, batch in enumerate(micro):
            with _no_grad_sync(wrapped, is_last=i == len(micro) - 1):
                loss, s = step_loss(wrapped, batch, n_target, info.world_size, autocast)
                loss.backward()
            sums[:6] += s
        grad_norm = _grad_norm(wrapped, cfg.optim.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if dist.is_initialized():
            dist.all_reduce(sums)
        total, text, audio, n_all, n_text, n_audio, flops = sums.tolist()
        record = {
            "step": step,
            "loss": total / max(n_all, 1),
            "loss/text": text / n_text if n_text else None,
            "loss/audio": audio / n_audio if n_audio else None,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens/target": n_all,
            **throughput.stop(plan.global_batch * plan.seq_len, flops),
            **memory_stats(info.device),
        }
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"loss is {record['loss']} at step {step}; lower optim.lr or check the data")
        if info.is_main:
            metrics_file.write(record)
            if step % cfg.train.log_interval == 0 or step == 1:
                logger.log({k: v for k, v in record.items() if v is not None and k != "step"}, step)
                log.info(
                    "step %d | loss %.4f text %s audio %s | lr %.2e | gnorm %.2f | %.0f tok/s | mfu %.1f%%",
                    step, record["loss"], _fmt(record["loss/text"]), _fmt(record["loss/audio"]), lr,
                    grad_norm, record["perf/tokens_per_s"], 100 * record.get("perf/mfu", 0.0),
                )
        if cfg.train.eval_interval and step % cfg.train.eval_interval == 0 and eval_callbacks:
            run_evals(eval_callbacks, wrapped, tokenizer, step, logger, out_dir)
        budget = cfg.train.max_minutes
        signalled, out_of_time = stop.any_rank(info.device, budget is not None and time.monotonic() - t_start > 60 * budget)
        if signalled or out_of_time or step % cfg.train.checkpoint_interval == 0 or step == cfg.train.max_steps:
            save(step)
            saved_at = step
        if signalled:
            log.info("received signal %s: checkpointed step %d, exiting", stop.received, step)
            break
        if out_of_time:
            log.info("train.max_minutes=%g reached: checkpointed step %d, finishing", budget, step)
            break
    if saved_at != step:
        save(step)
    if info.is_main:
        metrics_file.close()
        logger.finish()
        if step >= cfg.train.max_steps or out_of_time:
            (out_dir / "COMPLETED").write_text(f"{step}\n")
    if dist.is_initialized():
        dist.barrier()  # rank 0 may still be closing wandb; gloo aborts if a peer leaves first
    return record


def run_evals(callbacks, wrapped, tokenizer, step: int, logger, out_dir: Path | None) -> None:
    """Run every callback on every rank; rank 0 (logger and out_dir set) logs the results to
    wandb and the scalars to OUT/eval.jsonl."""
    wrapped.eval()
    with torch.no_grad():
        results = [cb(wrapped, tokenizer, step) for cb in callbacks]
    wrapped.train()
    if logger is None:
        return
    scalars = {}
    for result in results:
        for key, value in (result or {}).items():
            if isinstance(value, SampleTable):
                logger.log_table(key, value.columns, value.rows, step)
                log.info("%s at step %d:\n%s", key, step, "\n".join(" | ".join(map(str, r)) for r in value.rows))
            else:
                scalars[key] = value
    if scalars:
        logger.log(scalars, step)
        with open(out_dir / "eval.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        log.info("eval at step %d: %s", step, " ".join(f"{k} {v:.4f}" for k, v in scalars.items()))


def _fmt(x):
    return "-" if x is None else f"{x:.4f}"
