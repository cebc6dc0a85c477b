"""What the loop knows of evaluation: a callback protocol and how results are logged.

An eval callback gets (model, tokenizer, step) on EVERY rank (FSDP forwards are collective) and
returns {name: number or SampleTable}; rank 0 logs the results. The entry point (`mmtok train`,
`train/pretrain.py`, the demo) chooses the callbacks (`mmtok.training.evals.default_evals`) and
hands them to `train`; the loop itself imports no evaluation code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("mmtok.train")


@dataclass
class SampleTable:
    """What an eval callback returns to be logged as a wandb table (e.g. sample captions)."""

    columns: list[str]
    rows: list[list[Any]]


EvalCallback = Callable[[torch.nn.Module, Any, int], dict[str, Any]]


def run_evals(callbacks: list[EvalCallback], model, tokenizer, step: int, logger, out_dir: Path | None) -> None:
    """Run every callback on every rank in eval mode; rank 0 (logger and out_dir set) logs the
    results to wandb and the scalars to OUT/eval.jsonl."""
    model.eval()
    with torch.no_grad():
        results = [cb(model, tokenizer, step) for cb in callbacks]
    model.train()
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
