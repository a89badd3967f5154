"""``diffad report``: one self-contained HTML page from a run folder."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report``."""
    p = subparsers.add_parser(
        "report",
        help="render a run folder as a self-contained HTML page",
        description=(
            "Render the run folder DIR (report.json + arrays.npz, written by diffad localize, "
            "test or demo) as one HTML file with every picture embedded: the model and the "
            "healthy calibration check, a table of every image's score, p-values and "
            "decision, one panel per image, a QQ plot of healthy p-values and a histogram of "
            "image scores."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("folder", metavar="DIR", help="run folder")
    p.add_argument("--out", default=None, help="HTML file to write (default: DIR/report.html)")
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="level of the decisions shown (default: the run's alpha)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render the page and print its path."""
    # Imported here: jinja2, numpy and matplotlib would slow every other command's start.
    from diffad.report.render import render_report

    path = render_report(args.folder, out=args.out, alpha=args.alpha)
    print(f"report: {path}")
    return 0
