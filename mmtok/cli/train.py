"""`mmtok train [CONFIG] [--config NAME_OR_PATH] [key=value ...]`: pretrain (one process, or under torchrun)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="pretrain a model from a preset or YAML config plus dotted overrides",
        description="Pretrain from a config (a shipped preset such as tiny, demo_small, 125m, 7b, or a YAML "
        "path) with key=value overrides, e.g. tokenizer=DIR data.train_shards=DIR train.max_steps=100 "
        "train.out_dir=runs/x optim.lr=3e-4. Resumes from the latest checkpoint in train.out_dir. Run under "
        "torchrun for DDP/FSDP.",
    )
    p.add_argument("args", nargs="*", metavar="[CONFIG] key=value",
                   help="the config (unless --config is given), then dotted overrides")
    p.add_argument("--config", default=None, metavar="NAME_OR_PATH", help="preset name or YAML file")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--plan", action="store_true",
                   help="print the memory and throughput plan (JSON, then a table) under FSDP2 and exit")
    p.add_argument("--gpus", type=int, default=8, help="with --plan: GPUs the states are sharded over (default 8)")
    p.add_argument("--gpu-memory", type=float, default=80.0, metavar="GB",
                   help="with --plan: memory of one GPU in GiB (default 80)")
    p.set_defaults(func=run)


def config_and_overrides(args) -> tuple[str, list[str]]:
    """`--config X a=b` or `X a=b`: the config is the first argument without "=" unless given."""
    from mmtok.cli import CLIError

    rest = list(args.args)
    config = args.config
    if config is None:
        if not rest or "=" in rest[0]:
            raise CLIError("no config: give a preset name or YAML path (e.g. `mmtok train --config tiny ...`)")
        config = rest.pop(0)
    stray = [a for a in rest if "=" not in a]
    if stray:
        raise CLIError(f"{stray[0]!r} is not a key=value override")
    return config, rest


def run(args) -> int:
    from mmtok.checkpoint import CheckpointError
    from mmtok.cli import CLIError
    from mmtok.config import load_config
    from mmtok.training.evals import default_evals
    from mmtok.training.loop import train

    cfg = load_config(*config_and_overrides(args))
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if args.plan:
        import json

        from mmtok.training.plan import format_table, plan_config

        if args.gpus < 1 or args.gpu_memory <= 0:
            raise CLIError("--gpus must be >= 1 and --gpu-memory > 0")
        result = plan_config(cfg, args.gpus, args.gpu_memory)
        print(json.dumps(result, indent=2))
        print()
        print(format_table(result))
        return 0
    try:
        train(cfg, eval_callbacks=default_evals(cfg))
    except CheckpointError as e:
        raise CLIError(str(e)) from e
    return 0


def main(argv: list[str]) -> int:
    """`train/pretrain.py`'s main: same parsing and errors as `mmtok train`."""
    from mmtok.cli import main as mmtok_main

    return mmtok_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
