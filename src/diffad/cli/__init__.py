"""The ``diffad`` command line.

Every module of this package that defines ``add_parser(subparsers)`` contributes one command:
it adds an argparse sub-parser and sets ``func`` (called with the parsed arguments, returning
an exit code). Modules that set ``GROUP = "bench"`` hang under ``diffad bench``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from diffad import __version__


def _command_modules() -> list:
    """The command modules of this package, sorted by name."""
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            modules.append(module)
    return modules


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command."""
    parser = _Parser(prog="diffad", description="Diffusion-model anomaly detection with p-values.")
    parser.add_argument("--version", action="version", version=f"diffad {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser("bench", help="run a benchmark and write JSON results")
    bench_commands = bench.add_subparsers(dest="bench", metavar="BENCHMARK")
    bench.set_defaults(func=lambda args: _usage(bench))
    for module in _command_modules():
        group = getattr(module, "GROUP", None)
        module.add_parser(bench_commands if group == "bench" else commands)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffad`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        return _usage(parser)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # User errors: one clear line, no traceback.
        print(f"diffad: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
