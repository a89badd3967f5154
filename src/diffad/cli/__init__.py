"""The ``diffad`` command line.

Each command lives in its own module exposing ``add_parser(subparsers)``, which adds an
argparse sub-parser and sets ``func`` (called with the parsed arguments, returning an exit
code). Benchmarks hang under ``diffad bench``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from diffad import __version__

# Modules adding top-level commands (``diffad NAME``) and ``diffad bench NAME`` commands.
COMMAND_MODULES: list[str] = []
BENCH_MODULES: list[str] = []


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="diffad", description="Diffusion-model anomaly detection with p-values."
    )
    parser.add_argument("--version", action="version", version=f"diffad {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(commands)
    bench = commands.add_parser("bench", help="run a benchmark and write JSON results")
    bench_commands = bench.add_subparsers(dest="bench", metavar="BENCHMARK")
    for name in BENCH_MODULES:
        importlib.import_module(name).add_parser(bench_commands)
    bench.set_defaults(func=lambda args: _missing(bench))
    return parser


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffad`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        return _missing(parser)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # User errors: one clear line, no traceback.
        print(f"diffad: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
