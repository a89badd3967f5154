"""Do the fast default training settings of DTE-C / DTE-IG lose ROC-AUC against the paper's?

Runs each detector under the published settings (400 epochs, batch 64, lr 1e-4, no step cap)
and under candidate fast settings on a few ADBench sets (semi-paper split), and writes
``benchmarks/results/tabular_defaults.json`` with per-run ROC-AUC and fit time and the mean
difference per candidate. Results are written after every run, so a partial run is usable.

Usage::

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/tabular_defaults.py \
        --methods dte-c --seeds 0 --out benchmarks/results/tabular_defaults_dte-c.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from _tabular_common import DATA_DIR, Timer, load_set, machine_info, semi_paper_split, write_json

from diffad.tabular import DTECategorical, DTEInverseGamma

METHODS = {"dte-c": DTECategorical, "dte-ig": DTEInverseGamma}
CONFIGS = {
    "paper": {"epochs": 400, "batch_size": 64, "lr": 1e-4, "max_steps": None},
    "cap3000_b64": {"epochs": 400, "batch_size": 64, "lr": 1e-4, "max_steps": 3000},
    "cap2000_b256": {"epochs": 400, "batch_size": 256, "lr": 4e-4, "max_steps": 2000},
    # The class defaults: DTE-C batch 256, lr 4e-4, cap 3000; DTE-IG schedule "auto".
    "default": {},
    # DTE-C only: the published schedule with the published code's double softmax.
    "paper_double_softmax": {
        "epochs": 400,
        "batch_size": 64,
        "lr": 1e-4,
        "max_steps": None,
        "double_softmax": True,
    },
}
DATASETS = ["42_WBC", "6_cardio", "20_letter", "12_fault", "41_Waveform"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dte-c,dte-ig")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="benchmarks/results/tabular_defaults.json")
    parser.add_argument(
        "--resummarise", action="store_true", help="recompute the summary of --out and exit"
    )
    parser.add_argument(
        "--merge", nargs="+", default=None, help="result files to combine into --out, then exit"
    )
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        payload = {
            "machine": [p["machine"] for p in parts],
            "merged_from": args.merge,
            "configs": CONFIGS,
            "results": [r for p in parts for r in p["results"]],
        }
        payload["summary"] = summarise(payload["results"])
        write_json(Path(args.out), payload)
        print(json.dumps(payload["summary"], indent=2))
        return 0
    if args.resummarise:
        payload = json.loads(Path(args.out).read_text())
        payload["summary"] = summarise(payload["results"])
        write_json(Path(args.out), payload)
        print(json.dumps(payload["summary"], indent=2))
        return 0
    if not DATA_DIR.is_dir():
        print(f"ADBench data not found at {DATA_DIR}; set DIFFAD_ADBENCH. Skipping.")
        return 0
    torch.set_num_threads(1)
    out = Path(args.out)
    payload = {"machine": machine_info(), "configs": CONFIGS, "results": [], "summary": {}}
    for name in args.datasets.split(","):
        X, y = load_set(name)
        for seed in [int(s) for s in args.seeds.split(",")]:
            X_train, X_test, y_test = semi_paper_split(X, y, seed)
            for method in args.methods.split(","):
                for config in args.configs.split(","):
                    det = METHODS[method](**CONFIGS[config], random_state=seed, verbose=False)
                    with Timer() as fit:
                        det.fit(X_train)
                    auc = roc_auc_score(y_test, det.decision_function(X_test))
                    row = {
                        "dataset": name,
                        "method": method,
                        "config": config,
                        "seed": seed,
                        "n_train": int(X_train.shape[0]),
                        "steps": int(det.n_train_steps_),
                        "roc_auc": float(auc),
                        "fit_wall_s": fit.wall,
                        "fit_cpu_s": fit.cpu,
                    }
                    payload["results"].append(row)
                    print(row, flush=True)
                    payload["summary"] = summarise(payload["results"])
                    write_json(out, payload)
    print(payload["summary"])
    return 0


def summarise(rows: list[dict]) -> dict:
    """Mean ROC-AUC per (method, config) and the mean paired difference to ``paper``."""
    summary: dict = {}
    for method in sorted({r["method"] for r in rows}):
        paper = {
            (r["dataset"], r["seed"]): r["roc_auc"]
            for r in rows
            if r["method"] == method and r["config"] == "paper"
        }
        for config in sorted({r["config"] for r in rows if r["method"] == method}):
            sel = [r for r in rows if r["method"] == method and r["config"] == config]
            diffs = [
                100 * (r["roc_auc"] - paper[(r["dataset"], r["seed"])])
                for r in sel
                if (r["dataset"], r["seed"]) in paper
            ]
            se = float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else None
            summary[f"{method}/{config}"] = {
                "n_runs": len(sel),
                "mean_roc_auc_pct": float(100 * np.mean([r["roc_auc"] for r in sel])),
                "mean_diff_vs_paper_points": float(np.mean(diffs)) if diffs else None,
                "se_diff_points": se,
                "per_set_diff_points": {
                    f"{r['dataset']}/{r['seed']}": 100
                    * (r["roc_auc"] - paper[(r["dataset"], r["seed"])])
                    for r in sel
                    if (r["dataset"], r["seed"]) in paper
                },
                "n_paired": len(diffs),
                "mean_fit_wall_s": float(np.mean([r["fit_wall_s"] for r in sel])),
            }
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
