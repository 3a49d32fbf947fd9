"""`samp` command line: a thin dispatcher. Each area owns its sub-commands in its own ``cli`` module, which
exposes ``register(subparsers)`` adding parsers whose ``func(args) -> int`` does the work."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add sub-commands, in the order `samp --help` lists them.
COMMAND_MODULES = (
    "samp.methods.cli",   # samp methods
    "samp.models.cli",    # samp models convert
    "samp.eval.cli",      # samp eval, samp data prepare
    "samp.lowrank.cli",   # samp lowrank calibrate|plan|apply
    "samp.bench.cli",     # samp bench, samp dashboard
)


def build_parser() -> argparse.ArgumentParser:
    import samp

    parser = argparse.ArgumentParser(prog="samp", description="Compress speech LLMs and measure what it costs.")
    parser.add_argument("--version", action="version", version=f"samp {samp.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
