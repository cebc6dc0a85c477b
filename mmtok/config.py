"""The run config: one dataclass tree, loaded from YAML plus dotted command-line overrides.

    RunConfig
      model      ModelConfig     (mmtok.model.config)      -> .build() the Transformer
      data       DataConfig      (mmtok.data.loader)       -> .build() the PackedBatch stream
      optim      OptimConfig     (mmtok.optim.optimizer)   -> .build() AdamW
      schedule   ScheduleConfig  (mmtok.optim.schedule)    -> .build() warmup + cosine
      train      TrainConfig     (below: steps, batch, checkpoints, precision, parallelism)
      wandb      WandbConfig     (below: read by mmtok.training.wandb_log)
      tokenizer  str             (tokenizer directory)

`load_config("tiny", ["model.n_layers=4", "optim.lr=3e-4", "tokenizer=DIR"])` reads a shipped
preset (mmtok/configs/<name>.yaml, package data) or any YAML path, applies the overrides, builds
the tree and resolves it (`RunConfig.resolve`). Unknown keys fail with the closest known names;
values from the command line are strings and are coerced to the field's type.

Each setting has one source of truth: the data section's row length, batch size and seed are
left unset (None) and taken from `model.max_seq_len`, `train.micro_batch_size` and `train.seed`;
a value set in both places that cannot work together is an error naming both keys.
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
from mmtok.optim.optimizer import OptimConfig
from mmtok.optim.schedule import ScheduleConfig


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
    async_checkpoint: bool = False  # write checkpoints in a background thread (DCP async_save); training goes on meanwhile
    verify_checkpoints: bool = True  # check the sha256 of every checkpoint file before resuming from it
    consolidate_final: bool = True  # write model.safetensors (full weights, rank 0) into the run's last checkpoint
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
class WandbConfig:
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"  # auto: $WANDB_MODE, else online with an API key, else offline
    project: str = "mmtok"  # wandb project
    entity: str | None = None  # wandb team or user; None = the key's default
    name: str | None = None  # run name; None = the name of train.out_dir
    group: str | None = None  # group runs (e.g. a sweep)
    tags: list[str] = field(default_factory=list)  # free-form run tags
    init_timeout: float = 60.0  # seconds to wait for the server before falling back to offline


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

    def resolve(self) -> RunConfig:
        """Fill the data settings left unset from the sections that own them; refuse conflicts."""
        data, model, train = self.data, self.model, self.train
        if data.seq_len is None:
            data.seq_len = model.max_seq_len
        elif data.seq_len > model.max_seq_len:
            raise ConfigError(f"data.seq_len={data.seq_len} is longer than model.max_seq_len={model.max_seq_len}: "
                              "rows must fit the model's context (leave data.seq_len unset to use it)")
        if data.batch_size is None:
            data.batch_size = train.micro_batch_size
        elif data.batch_size != train.micro_batch_size:
            raise ConfigError(f"data.batch_size={data.batch_size} differs from train.micro_batch_size="
                              f"{train.micro_batch_size}: the loader's batches are the micro-batches "
                              "(leave data.batch_size unset and set train.micro_batch_size)")
        if data.seed is None:
            data.seed = train.seed
        return self

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


# ---- shipped presets ----------------------------------------------------------------------------

PRESETS_DIR = Path(__file__).parent / "configs"  # package data; the repository's configs/ points here


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def config_path(spec: str | Path) -> Path:
    """A YAML file that exists, else a shipped preset named by `spec` ("demo_small",
    "demo_small.yaml" or "configs/demo_small.yaml": the last works from any directory)."""
    path = Path(spec)
    if path.is_file():
        return path
    if path.parent in (Path("."), Path("configs")):
        preset = PRESETS_DIR / f"{path.stem if path.suffix in ('.yaml', '.yml') else path.name}.yaml"
        if preset.is_file():
            return preset
    raise ConfigError(f"config {spec} does not exist: neither a file nor a shipped preset ({', '.join(preset_names())})")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """YAML file or preset name (optional) + dotted overrides -> resolved RunConfig."""
    tree: dict = {}
    if path is not None:
        path = config_path(path)
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
        cfg.resolve()
    except ValueError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None
    return cfg
