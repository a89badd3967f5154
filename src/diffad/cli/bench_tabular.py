"""``diffad bench tabular``: detectors on ADBench ``.npz`` sets vs the published ROC-AUC."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

GROUP = "bench"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``tabular`` under ``diffad bench``."""
    from diffad.bench.methods import METHODS
    from diffad.data.adbench import PROTOCOLS

    p = subparsers.add_parser(
        "tabular",
        help="run detectors on ADBench .npz sets and compare with the published ROC-AUC",
        description=(
            "Fit and score detectors on every *.npz in --data-dir under an ADBench protocol, "
            "write per-run JSON records and print seed-averaged ROC-AUC next to the DTE "
            "paper's published value."
        ),
    )
    p.add_argument("--data-dir", required=True, help="folder of ADBench .npz files")
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated names (cardio, 6_cardio or a family such as MVTec-AD); "
        "default: every .npz in --data-dir",
    )
    p.add_argument("--protocol", choices=PROTOCOLS, default="semi-paper")
    p.add_argument(
        "--methods",
        default="dte-np,knn",
        help=f"comma-separated, from: {','.join(METHODS)} (default: dte-np,knn); dte-c-ds is "
        "DTE-C with the published code's double-softmax loss",
    )
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default 0-4)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--device", default="auto", help="device of the diffusion detectors")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="override the training epochs of dte-ig, dte-c and ddpm (default: their own)",
    )
    p.add_argument(
        "--anchors",
        default=None,
        help="published-results JSON to compare with (default: the DTE paper's numbers)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError as err:
        raise ValueError(f"--seeds must be comma-separated integers, got {spec!r}") from err
    if not seeds:
        raise ValueError("--seeds is empty")
    return list(dict.fromkeys(seeds))


def _command_line(args: argparse.Namespace) -> str:
    """The equivalent ``diffad bench tabular`` command line of the parsed arguments."""
    parts = ["diffad", "bench", "tabular"]
    for opt in ("data_dir", "datasets", "protocol", "methods", "seeds", "out", "device"):
        value = getattr(args, opt)
        if value is not None:
            parts += ["--" + opt.replace("_", "-"), str(value)]
    for opt in ("epochs", "anchors"):
        if getattr(args, opt) is not None:
            parts += ["--" + opt, str(getattr(args, opt))]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, write ``--out`` and print the summary table."""
    from diffad.bench.methods import NEURAL_METHODS, parse_methods
    from diffad.bench.published import load_published
    from diffad.bench.tabular import (
        markdown_table,
        run_tabular,
        select_files,
        summarize,
    )
    from diffad.provenance import machine_info, write_json

    methods = parse_methods(args.methods)
    seeds = _parse_seeds(args.seeds)
    datasets = [d for d in (args.datasets or "").split(",") if d.strip()] or None
    files = select_files(args.data_dir, datasets)
    published = load_published(args.anchors) if args.anchors else None
    if args.epochs is not None and args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    params = {m: {"epochs": args.epochs} for m in NEURAL_METHODS} if args.epochs is not None else {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = run_tabular(
        files,
        args.protocol,
        methods,
        seeds,
        device=args.device,
        method_params=params,
        verbose=not args.quiet,
    )
    rows = summarize(records, published, args.protocol)
    payload = {
        "command": _command_line(args),
        "machine": machine_info(),
        "protocol": args.protocol,
        "data_dir": str(args.data_dir),
        "methods": methods,
        "seeds": seeds,
        "results": records,
        "summary": rows,
    }
    write_json(out, payload, indent=1)
    print(markdown_table(rows))
    print(f"\nwrote {len(records)} records to {out}")
    return 0
