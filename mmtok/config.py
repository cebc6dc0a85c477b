"""The run config: one dataclass tree, loaded from YAML plus dotted command-line overrides.

    RunConfig
      model      ModelConfig     (mmtok.model.config)       -> .build() the Transformer
      data       DataConfig      (mmtok.data.loader)        -> .build() the PackedBatch stream
      optim      OptimConfig     (mmtok.training.optim)     -> .build() AdamW
      schedule   ScheduleConfig  (mmtok.training.schedule)  -> .build() warmup + cosine
      train      TrainConfig     (below: steps, batch, checkpoints, precision, parallelism)
      wandb      WandbConfig     (mmtok.training.wandb_log)
      tokenizer  str             (tokenizer directory)

`load_config("configs/tiny.yaml", ["model.n_layers=4", "optim.lr=3e-4", "tokenizer=DIR"])`
reads the YAML, applies the overrides, and builds the tree. Unknown keys fail with the closest
known names; values from the command line are strings and are coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmtok.data.loader import DataConfig
from mmtok.model.config import ModelConfig
from mmtok.training.optim import OptimConfig
from mmtok.training.schedule import ScheduleConfig
from mmtok.training.wandb_log import WandbConfig


class ConfigError(ValueError):
    """A config file or override is wrong (unknown key, bad value, inconsistent sizes)."""


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps to train for (the run ends at this step)
    max_minutes: float | None = None  # also end (checkpoint, COMPLETED) after this much training time in this process
    global_batch_size: int | None = 32  # sequences per optimizer step, all ranks together
    global_batch_tokens: int | None = None  # or: tokens per step (overrides global_batch_size)
    micro_batch_size: int = 8  # sequences per forward/backward on one rank (sets data.batch_size); accumulation fills the rest
    out_dir: str = "runs/default"  # checkpoints/, metrics.jsonl, wandb/ go here
    checkpoint_interval: int = 500  # save every N steps (and at the end, and on SIGTERM/SIGUSR1)
    keep_last_k: int = 3  # older step_* checkpoint directories are deleted
    resume: str = "auto"  # "auto": latest checkpoint in out_dir if any; "never"; or a checkpoint dir
    eval_interval: int = 500  # every N steps: validation loss + sample captions (needs data.valid_shards); 0 = never
    eval_sequences: int = 64  # held-out rows for the validation loss (read one row per batch, so a tiny split still counts)
    eval_captions: int = 4  # held-out clips captioned into the wandb table; 0 = none
    log_interval: int = 10  # log metrics every N steps
    seed: int = 0  # seeds torch/numpy/random (the same on every rank: the model init must agree)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast where the device has bf16 in hardware (CUDA; AVX512-BF16 or AMX CPUs), else fp32
    compile: bool = False  # torch.compile each Transformer block (no gain on CPU, ~30 s to compile)
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    parallelism: Literal["ddp", "fsdp"] = "ddp"  # data parallel (replicated) or FSDP2 (sharded)
    device: str = "auto"  # auto: cuda:LOCAL_RANK when available, else cpu

    def __post_init__(self):
        for name in ("micro_batch_size", "checkpoint_interval", "log_interval", "keep_last_k"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_steps", "eval_interval", "eval_sequences", "eval_captions"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    tokenizer: str | None = None  # tokenizer directory (MultimodalTokenizer.from_pretrained)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path) -> None:
        Path(path).write_text(self.to_yaml())

    def set_vocab_size(self, tokenizer_vocab: int) -> None:
        """Size the embedding for the tokenizer (unset: take its size; smaller: error)."""
        try:
            self.model = self.model.for_vocab(tokenizer_vocab)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None


# ---- building dataclasses from nested dicts ------------------------------------------------------


def _unknown_key_error(key: str, cls: type, where: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(where + c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key {where + key!r}{hint} (known: {', '.join(names)})")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert `value` (from YAML, or a string from the command line) to the annotated type."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]  # `a,b,c` on the command line
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(v, item_tp, where) for v in value]
        return origin(items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        try:
            number = float(value)  # "3e-4", "1e6" and 1000.0 all parse
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and number != int(number):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(number) if tp is int else number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value  # Any or an unannotated field


def from_dict(cls: type, data: dict, where: str = ""):
    """Build dataclass `cls` from a nested dict, coercing types; unknown keys raise ConfigError."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown_key_error(key, cls, where)
        kwargs[key] = _coerce(value, hints[key], f"{where}{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a config's own __post_init__ checks (e.g. heads vs width)
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where.rstrip('.') or cls.__name__}: {e}") from e


# ---- overrides -----------------------------------------------------------------------------------


def apply_override(tree: dict, override: str) -> None:
    """`a.b.c=value` sets tree['a']['b']['c'] = value (a string; from_dict coerces it)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key=value (e.g. optim.lr=3e-4)")
    *parents, leaf = key.strip().split(".")
    node = tree
    for p in parents:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {p!r} is a value, not a section")
        node = child
    node[leaf] = value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """YAML file (optional) + dotted overrides -> RunConfig."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(tree).__name__}")
    for o in overrides:
        apply_override(tree, o)
    try:
        cfg = from_dict(RunConfig, tree)
        # Shape errors (heads not dividing width, ...) now, not after the tokenizer has loaded;
        # the vocabulary is checked against the tokenizer later (RunConfig.set_vocab_size).
        dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or 1).validate()
    except ValueError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None
    return cfg
