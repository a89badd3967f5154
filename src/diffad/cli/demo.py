"""``diffad demo``: the whole idea on real images (default) or on a table (``tabular``)."""

from __future__ import annotations

import argparse
import time

from diffad.demo.tabular import DEMO_EPOCHS
from diffad.image import LOCALIZER_METHODS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``diffad demo``."""
    p = subparsers.add_parser(
        "demo",
        help="brain MRI with synthetic lesions: maps, per-image and region p-values, a report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "brain (default): train a small DDPM on healthy MNI152 slices (or load it from the "
            "cache), calibrate it on Colin27 slices, and test Colin27 slices with and without "
            "SYNTHETIC lesions: anomaly maps, conformal p-values with Benjamini-Hochberg, pixel "
            "masks, selective p-values of the flagged regions next to the naive ones, the "
            "healthy calibration check; writes OUT/report.html and OUT/report.json. "
            "tabular: DTE-C with conformal p-values on breast-cancer data (ODDS wbc layout)."
        ),
    )
    p.add_argument("which", nargs="?", choices=("brain", "tabular"), default="brain")
    p.add_argument("--out", default="diffad-demo", help="output folder (brain)")
    p.add_argument("--quick", action="store_true", help="small, fast settings (brain)")
    p.add_argument(
        "--method",
        choices=LOCALIZER_METHODS,
        default="ddpm",
        help="localiser to train (brain): a DDPM or DISYRE v2",
    )
    p.add_argument("--cache", default=None, help="cache folder (brain; default ~/.cache/diffad)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split and the model")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="DTE-C epochs (tabular)")
    p.add_argument("--q", type=float, default=0.1, help="BH false-discovery level (tabular)")
    p.add_argument("--top", type=int, default=12, help="rows shown (tabular)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda (tabular)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen demo."""
    from diffad.cli._images import set_threads

    set_threads(args.threads)
    if args.which == "tabular":
        from diffad.demo.tabular import run_tabular_demo

        return run_tabular_demo(args)
    from diffad.demo.brain import run_brain_demo

    start = time.perf_counter()
    print("diffad demo: brain MRI, SYNTHETIC lesions (CPU)")
    html = run_brain_demo(
        args.out,
        quick=args.quick,
        method=args.method,
        seed=args.seed,
        cache=args.cache,
        verbose=not args.quiet,
        log=lambda line: print(f"  {line}", flush=True),
    )
    print(f"  done in {time.perf_counter() - start:.0f} s")
    print(f"report: {html}")
    return 0
