"""`mmtok` command line: one thin module per command group (parse, call the library, print).

Each module in this package exposes `register(subparsers)`, adding its commands with
`set_defaults(func=handler)`; handlers import the heavy parts of the library themselves so that
`mmtok --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command-group modules, in the order `mmtok --help` lists them (data flows left to right).
GROUPS = ("tokenizer", "data", "train", "checkpoint", "generate", "tasks", "eval", "export", "demo")


class CLIError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmtok", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        try:
            module = importlib.import_module(f"mmtok.cli.{group}")
        except ModuleNotFoundError as e:
            if e.name != f"mmtok.cli.{group}":
                raise
            continue  # command group not written yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (CLIError, FileNotFoundError, ValueError) as e:
        print(f"mmtok {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
