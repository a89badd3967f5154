"""Points traced and CPU seconds per DAL-Test p-value for several search settings.

The batched parametric search traces ``batch_size`` points per direction and round, placed
``spacing`` median piece widths apart (``diffad.selective.search.parametric_search``). This
script runs the same null images of the validity benchmark (``si_validity.draw_trial``, seed 0)
with every pair of the given batch sizes and spacings and records, per image, the points
traced, the CPU seconds and the p-value with its bracket, so the settings can be compared on
identical work: all runs must give the same p-value to within the precision of the stop.
The first pair is the base of the ratios. (``si_spacing_d8.json`` and ``si_spacing_d16.json``
were written before ``--batch-sizes`` existed and key their runs by spacing alone.)

Example: ``python benchmarks/si_spacing.py --size 8 --trials 0,1,2,3,4,5 --spacings 1,3
--out benchmarks/results/si_spacing_d8.json``; ``--batch-sizes 8,16,32 --spacings 3`` compares
batch sizes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402
from si_validity import LAM, draw_trial  # noqa: E402

from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402


def run(args: argparse.Namespace) -> dict:
    """Every (batch size, spacing) pair on every trial."""
    torch.set_num_threads(1)
    loc = get_localizer(args.size, args.train_steps, 0, verbose=False)
    pairs = {t: draw_trial(args.size, 0.0, "iid", 0, t) for t in args.trials}
    runs = {}
    for batch_size, spacing in itertools.product(args.batch_sizes, args.spacings):
        tester = SelectiveTest(
            loc,
            1.0,
            lam=LAM,
            termination="precision",
            precision=args.precision,
            batch_size=batch_size,
            spacing=spacing,
            device="cpu",
        )
        rows = []
        for trial, (x, r) in pairs.items():
            c0 = time.process_time()
            res = tester.test_prepared(x, r, "parametric")
            cpu = time.process_time() - c0
            if not res.selected:
                continue
            rows.append(
                {
                    "trial": trial,
                    "points": res.n_pieces,
                    "network_calls": res.n_network_calls,
                    "cpu_seconds": cpu,
                    "p_value": res.p_value,
                    "p_bounds": list(res.p_value_bounds),
                }
            )
        label = f"batch {batch_size}, spacing {spacing:g}"
        runs[label] = {
            "batch_size": batch_size,
            "spacing": spacing,
            "rows": rows,
            "total_points": int(sum(r["points"] for r in rows)),
            "total_cpu_seconds": float(sum(r["cpu_seconds"] for r in rows)),
        }
        print(label, runs[label]["total_points"], flush=True)
    base = next(iter(runs.values()))
    for run_ in runs.values():
        run_["points_vs_first"] = run_["total_points"] / base["total_points"]
        run_["cpu_vs_first"] = run_["total_cpu_seconds"] / base["total_cpu_seconds"]
        run_["max_abs_p_diff_vs_first"] = float(
            max(
                abs(a["p_value"] - b["p_value"])
                for a, b in zip(run_["rows"], base["rows"], strict=True)
            )
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--trials", default="0,1,2,3,4,5", help="comma-separated trial numbers")
    parser.add_argument("--spacings", default="1,3", help="comma-separated; the first is the base")
    parser.add_argument("--batch-sizes", default="8", help="comma-separated batch sizes")
    parser.add_argument("--precision", type=float, default=1e-3)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.trials = [int(t) for t in args.trials.split(",")]
    args.spacings = [float(s) for s in args.spacings.split(",")]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    machine = machine_info()
    runs = run(args)
    doc = {
        "size": args.size,
        "trials": args.trials,
        "precision": args.precision,
        "settings": runs,
        "command": machine["command"],
        "machine": machine,
    }
    write_json(Path(args.out), doc, indent=1)
    print(
        json.dumps(
            {s: {k: v for k, v in r.items() if k != "rows"} for s, r in runs.items()},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
