"""`mmtok train CONFIG [key=value ...]`: pretrain (single process, or under torchrun)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="pretrain a model from a YAML config plus dotted overrides",
        description="Pretrain from CONFIG (configs/*.yaml) with key=value overrides, e.g. "
        "tokenizer=DIR data.train_shards=DIR train.max_steps=100 train.out_dir=runs/x optim.lr=3e-4. "
        "Resumes from the latest checkpoint in train.out_dir. Run under torchrun for DDP/FSDP.",
    )
    p.add_argument("config", help="YAML config file (e.g. configs/tiny.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from mmtok.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from mmtok.cli import CLIError
    from mmtok.training.checkpoint import CheckpointError
    from mmtok.training.loop import train

    try:
        train(cfg)
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    return 0


def main(argv: list[str]) -> int:
    """`train/pretrain.py`'s main: same parsing and errors as `mmtok train`."""
    from mmtok.cli import main as mmtok_main

    return mmtok_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
