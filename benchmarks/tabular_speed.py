"""Speed and memory of the tabular detectors at their default settings.

Writes ``benchmarks/results/tabular_speed.json`` with

* ``per_set``: fit and score seconds (wall and process CPU) per method and data set, on the
  semi-paper split (first 50 % of normals train; sets over 50 000 rows subsampled to 50 000);
* ``dtec_50k``: DTE-C fit + score of the 50 000-row set, median of ``--repeats`` runs;
* ``score_ratio``: DDPM vs DTE-C scoring time on the same rows, ``--repeats`` interleaved
  timings, the ratio of medians (and each run's ratio);
* ``dtenp_rss``: peak resident memory of a fresh process that fits DTE-NP on the largest set
  and scores its test rows (``resource.getrusage``), next to the same process's RSS right
  after importing diffad.

Torch runs single-threaded (``torch.set_num_threads(1)``), so every number is a one-core
figure; the machine's load average is stored with the results, because the machine is shared
and wall time under load exceeds CPU time.

Usage::

    nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/tabular_speed.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from _tabular_common import DATA_DIR, Timer, load_set, machine_info, semi_paper_split, write_json

from diffad.tabular import DDPMDetector, DTECategorical, DTEInverseGamma, DTENonParametric

METHODS = {
    "dte-np": DTENonParametric,
    "dte-c": DTECategorical,
    "dte-ig": DTEInverseGamma,
    "ddpm": DDPMDetector,
}


def rss_child(name: str, seed: int) -> None:
    """Run in a fresh process: fit + score DTE-NP, print peak RSS (MiB) as JSON."""
    torch.set_num_threads(1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    X, y = load_set(name)
    X_train, X_test, y_test = semi_paper_split(X, y, seed)
    del X, y
    with Timer() as t:
        det = DTENonParametric().fit(X_train)
        auc = roc_auc_score(y_test, det.decision_function(X_test))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "dataset": name,
                "n_train": int(X_train.shape[0]),
                "n_test": int(X_test.shape[0]),
                "n_features": int(X_train.shape[1]),
                "rss_after_imports_mib": base,
                "peak_rss_mib": peak,
                "wall_s": t.wall,
                "cpu_s": t.cpu,
                "roc_auc": float(auc),
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="6_cardio,30_satellite,32_shuttle,11_donors")
    parser.add_argument("--big", default="11_donors", help="the 50 000-row set")
    parser.add_argument("--ddpm-sets", default="6_cardio", help="sets where DDPM is fitted")
    parser.add_argument("--ratio-rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/tabular_speed.json")
    parser.add_argument("--paper-epochs", type=int, default=2)
    parser.add_argument(
        "--sections",
        default="rss,ratio,dtec50k,paper_cost,per_set",
        help="what to run; with a subset, the other sections of an existing --out are kept",
    )
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if args.rss_child:
        rss_child(args.rss_child, args.seed)
        return 0
    if not DATA_DIR.is_dir():
        print(f"ADBench data not found at {DATA_DIR}; set DIFFAD_ADBENCH. Skipping.")
        return 0
    torch.set_num_threads(1)
    out = Path(args.out)
    payload: dict = {}
    if out.is_file() and sections != {"rss", "ratio", "dtec50k", "paper_cost", "per_set"}:
        payload = json.loads(out.read_text())
    payload.setdefault("machine_per_section", {})
    payload["settings"] = "class defaults, verbose=False"
    for name in sections:
        payload["machine_per_section"][name] = machine_info()

    # Peak memory first, in a clean process.
    if "rss" in sections:
        proc = subprocess.run(
            [sys.executable, __file__, "--rss-child", args.big, "--seed", str(args.seed)],
            capture_output=True,
            text=True,
            check=True,
        )
        payload["dtenp_rss"] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(payload["dtenp_rss"], flush=True)
        write_json(out, payload)

    X, y = load_set(args.big)
    X_train, X_test, y_test = semi_paper_split(X, y, args.seed)

    if "ratio" in sections:
        # DTE-C vs DDPM scoring on the same rows of the big set; DDPM is trained briefly on a
        # slice of the training rows (its training does not change its scoring cost).
        rows = X_test[: args.ratio_rows]
        dtec = DTECategorical(verbose=False, random_state=args.seed).fit(X_train)
        ddpm = DDPMDetector(verbose=False, random_state=args.seed, max_steps=300)
        ddpm.fit(X_train[:500])
        runs = []
        for _ in range(args.repeats):
            with Timer() as tc:
                dtec.decision_function(rows)
            with Timer() as td:
                ddpm.decision_function(rows)
            runs.append(
                {
                    "dtec_wall_s": tc.wall,
                    "dtec_cpu_s": tc.cpu,
                    "ddpm_wall_s": td.wall,
                    "ddpm_cpu_s": td.cpu,
                    "ratio_wall": td.wall / tc.wall,
                    "ratio_cpu": td.cpu / max(tc.cpu, 1e-9),
                }
            )
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        payload["score_ratio"] = {
            "dataset": args.big,
            "n_rows": int(rows.shape[0]),
            "runs": runs,
            "median": med,
            "ratio_of_median_wall": med["ddpm_wall_s"] / med["dtec_wall_s"],
            "n_reverse_steps": ddpm.n_reverse_steps,
        }
        print(payload["score_ratio"]["median"], flush=True)
        write_json(out, payload)

    if "dtec50k" in sections:
        # DTE-C fit + score of the whole 50 000-row set, repeated.
        fits = []
        for r in range(args.repeats):
            det = DTECategorical(verbose=False, random_state=args.seed + r)
            with Timer() as tf:
                det.fit(X_train)
            with Timer() as ts:
                scores = det.decision_function(X_test)
            fits.append(
                {
                    "fit_wall_s": tf.wall,
                    "fit_cpu_s": tf.cpu,
                    "score_wall_s": ts.wall,
                    "score_cpu_s": ts.cpu,
                    "total_wall_s": tf.wall + ts.wall,
                    "total_cpu_s": tf.cpu + ts.cpu,
                    "steps": det.n_train_steps_,
                    "roc_auc": float(roc_auc_score(y_test, scores)),
                }
            )
            print(fits[-1], flush=True)
        payload["dtec_50k"] = {
            "dataset": args.big,
            "n_rows": int(X_train.shape[0] + X_test.shape[0]),
            "n_train": int(X_train.shape[0]),
            "n_test": int(X_test.shape[0]),
            "runs": fits,
            "median": {k: float(np.median([f[k] for f in fits])) for k in fits[0]},
        }
        write_json(out, payload)

    # Cost of the published schedule on the same set: a few epochs, timed per step.
    if "paper_cost" in sections:
        det = DTECategorical.paper_settings(verbose=False, epochs=args.paper_epochs)
        with Timer() as tp:
            det.fit(X_train)
        per_step_cpu = tp.cpu / det.n_train_steps_
        steps_400 = 400 * int(np.ceil(X_train.shape[0] / 64))
        payload["paper_cost"] = {
            "dataset": args.big,
            "n_train": int(X_train.shape[0]),
            "epochs_run": args.paper_epochs,
            "steps_run": det.n_train_steps_,
            "fit_wall_s": tp.wall,
            "fit_cpu_s": tp.cpu,
            "cpu_s_per_step": per_step_cpu,
            "steps_for_400_epochs": steps_400,
            "extrapolated_cpu_s_for_400_epochs": per_step_cpu * steps_400,
            "note": "extrapolation: measured CPU seconds per step x steps of 400 epochs",
        }
        print(payload["paper_cost"], flush=True)
        write_json(out, payload)

    if "per_set" in sections:
        # Per-set fit/score seconds, one run each.
        payload["per_set"] = []
        ddpm_sets = set(args.ddpm_sets.split(","))
        for name in args.sets.split(","):
            X, y = load_set(name)
            X_train, X_test, y_test = semi_paper_split(X, y, args.seed)
            for method, cls in METHODS.items():
                if method == "ddpm" and name not in ddpm_sets:
                    continue
                det = (
                    cls(verbose=False)
                    if method == "dte-np"
                    else cls(verbose=False, random_state=args.seed)
                )
                with Timer() as tf:
                    det.fit(X_train)
                with Timer() as ts:
                    scores = det.decision_function(X_test)
                row = {
                    "dataset": name,
                    "method": method,
                    "n_train": int(X_train.shape[0]),
                    "n_test": int(X_test.shape[0]),
                    "fit_wall_s": tf.wall,
                    "fit_cpu_s": tf.cpu,
                    "score_wall_s": ts.wall,
                    "score_cpu_s": ts.cpu,
                    "roc_auc": float(roc_auc_score(y_test, scores)),
                }
                payload["per_set"].append(row)
                print(row, flush=True)
                write_json(out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
