"""Weights & Biases logging that never stops a run: online when it can, offline otherwise.

wandb is imported only here, inside `WandbLogger`, so `import mmtok` stays light. Only rank 0
logs. The run id is kept in OUT/wandb_run_id so a resumed run (or a requeued Slurm job)
continues the same wandb run instead of starting a new one.
"""

from __future__ import annotations

import logging
import netrc
import os
import uuid
from pathlib import Path

from mmtok.config import WandbConfig

log = logging.getLogger(__name__)


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(cfg: WandbConfig) -> str:
    if cfg.mode != "auto":
        return cfg.mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if _has_api_key() else "offline"


class WandbLogger:
    """`log(metrics, step)`, `log_table(key, columns, rows, step)`, `finish()`."""

    def __init__(self, cfg: WandbConfig, run_config: dict, out_dir):
        self.mode = resolve_mode(cfg)
        self.run = None
        self.broken = False
        if self.mode == "disabled":
            return  # not even the import (1-2 s)
        import wandb

        self._wandb = wandb
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        id_file = out_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n")
        kwargs = dict(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.name or out_dir.resolve().name,
            group=cfg.group,
            tags=list(cfg.tags),
            config=run_config,
            dir=str(out_dir),
            id=run_id,
            resume="allow",
        )
        try:
            self.run = wandb.init(
                mode=self.mode, settings=wandb.Settings(init_timeout=cfg.init_timeout), **kwargs
            )
        except Exception as e:  # no key, no network, server down: keep training, log locally
            if self.mode != "online":
                raise
            log.warning("wandb online init failed (%s); logging offline to %s", e, out_dir / "wandb")
            self.mode = "offline"
            self.run = wandb.init(mode="offline", **kwargs)

    def log(self, metrics: dict, step: int) -> None:
        self._safely(lambda: self.run.log(metrics, step=step))

    def log_table(self, key: str, columns: list[str], rows: list[list], step: int) -> None:
        self._safely(lambda: self.run.log({key: self._wandb.Table(columns=columns, data=rows)}, step=step))

    def finish(self) -> None:
        self._safely(lambda: self.run.finish())
        # run.finish() can return before wandb's service process has written the last records
        # to the run file (seen ~1 in 8 offline runs); teardown waits for the service to flush
        # and exit. Its atexit hook would do the same, but wandb documents that hook as
        # unreliable beside multiprocessing (our DataLoader workers).
        self._safely(self._teardown)

    def _teardown(self) -> None:
        try:
            self._wandb.teardown()
        except SystemExit as e:  # wandb calls sys.exit when its service exits non-zero
            raise RuntimeError(f"wandb service exited with status {e.code}") from e

    def _safely(self, fn) -> None:
        """wandb's service process can die under us (e.g. SIGTERM to the whole job): warn once,
        stop logging to wandb, keep training (metrics.jsonl still has everything)."""
        if self.run is None or self.broken:
            return
        try:
            fn()
        except Exception as e:
            self.broken = True
            log.warning("wandb logging failed (%s); continuing without wandb", e)
