"""Conformal p-values + Benjamini-Hochberg on ADBench sets: measured FDR, power, uniformity.

For each data set and seed: the normal rows are shuffled (seeded); half of them are the
training part, which ``ConformalDetector`` splits again into a fitting half and a
calibration half; the test part is the other half of the normals plus every anomaly.
Features are standardised on the training part. BH at level q selects test rows.

Reported per set and overall (over all set x seed runs):
- FDR = mean false-discovery proportion, with its standard error over runs;
- power = mean share of anomalies selected;
- type-I rate of test normals at 0.05 and 0.1, P(p <= a), averaged over runs (SE over runs);
- uniformity: a Kolmogorov-Smirnov test vs U(0, 1) of ONE randomly chosen test-normal
  p-value per run (runs are independent, so this KS p-value is valid), and, as a distance
  only, the KS statistic of all test-normal p-values pooled per set (they share calibration
  rows within a run, so the pooled KS p-value is not calibrated and is not reported).

Example (repository root)::

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/conformal_fdr.py --seeds 20
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kstest
from sklearn.preprocessing import StandardScaler

from diffad.provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "adbench" / "Classical"
DEFAULT_SETS = "cardio,fault,Pima,landsat,optdigits,satimage-2,Waveform,SpamBase"


def one_run(X: np.ndarray, y: np.ndarray, method: str, seed: int, q: float) -> dict:
    """One random split, fit, calibrate, BH; returns rates and the test-normal p-values."""
    from diffad.bench.methods import make_detector
    from diffad.conformal import ConformalDetector, benjamini_hochberg

    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(y == 0))
    anomaly = np.flatnonzero(y == 1)
    n_train = len(normal) // 2
    train = normal[:n_train]
    test = np.concatenate([normal[n_train:], anomaly])
    scaler = StandardScaler().fit(X[train])
    X_train, X_test, y_test = scaler.transform(X[train]), scaler.transform(X[test]), y[test]
    det = ConformalDetector(
        make_detector(method, seed, verbose=False), calibration_fraction=0.5, random_state=seed
    ).fit(X_train)
    p = det.p_values(X_test)
    selected = benjamini_hochberg(p, q)
    false = int(np.sum(selected & (y_test == 0)))
    true = int(np.sum(selected & (y_test == 1)))
    p_null = p[y_test == 0]
    return {
        "seed": seed,
        "n_cal": int(det.calibration_scores_.size),
        "n_test_normal": int(p_null.size),
        "n_test_anomaly": int(anomaly.size),
        "n_selected": int(selected.sum()),
        "fdp": false / max(false + true, 1),
        "power": true / max(anomaly.size, 1),
        "type1_005": float(np.mean(p_null <= 0.05)),
        "type1_010": float(np.mean(p_null <= 0.10)),
        "one_null_p": float(p_null[rng.integers(p_null.size)]),
        "_p_null": p_null,
    }


def _mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else 0.0


def _aggregate(runs: list[dict]) -> dict:
    """Mean and standard error over runs of FDR, power and the type-I rates."""
    out = {}
    for key, name in (("fdp", "fdr"), ("power", "power"), ("type1_005",) * 2, ("type1_010",) * 2):
        out[name], out[name + "_se"] = _mean_se([r[key] for r in runs])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--datasets", default=DEFAULT_SETS)
    parser.add_argument("--method", default="dte-np")
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds (0..N-1)")
    parser.add_argument("--q", type=float, default=0.1)
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "conformal_fdr.json")
    )
    args = parser.parse_args(argv)

    import torch

    from diffad.bench.tabular import select_files
    from diffad.data.adbench import dataset_name, load_npz
    from diffad.provenance import machine_info

    torch.set_num_threads(1)
    files = select_files(args.data_dir, args.datasets.split(","))
    started = time.time()
    per_set, all_runs, one_per_run = [], [], []
    for path in files:
        X, y = load_npz(path)
        if np.isnan(X).any():
            raise ValueError(f"{path.name} has missing values; pick another set")
        runs = [one_run(X, y, args.method, s, args.q) for s in range(args.seeds)]
        pooled = np.concatenate([r.pop("_p_null") for r in runs])
        row = {
            "dataset": dataset_name(path),
            "n_cal": runs[0]["n_cal"],
            "n_test_normal": runs[0]["n_test_normal"],
            "n_test_anomaly": runs[0]["n_test_anomaly"],
            **_aggregate(runs),
            "mean_selected": float(np.mean([r["n_selected"] for r in runs])),
            "pooled_ks_stat": float(kstest(pooled, "uniform").statistic),
            "runs": runs,
        }
        per_set.append(row)
        all_runs += runs
        one_per_run += [r["one_null_p"] for r in runs]
        print(
            f"{row['dataset']}: FDR {row['fdr']:.3f} ± {row['fdr_se']:.3f}, power "
            f"{row['power']:.3f}, P(p<=0.1) {row['type1_010']:.3f} "
            f"({time.time() - started:.0f} s)",
            flush=True,
        )
    ks = kstest(one_per_run, "uniform")
    overall = {
        "n_runs": len(all_runs),
        **_aggregate(all_runs),
        "ks_one_null_per_run_stat": float(ks.statistic),
        "ks_one_null_per_run_p": float(ks.pvalue),
    }
    payload = {
        "command": "python benchmarks/conformal_fdr.py " + shlex.join(sys.argv[1:] or []),
        "machine": machine_info(),
        "method": args.method,
        "q": args.q,
        "seeds": args.seeds,
        "elapsed_s": time.time() - started,
        "overall": overall,
        "per_set": per_set,
    }
    write_json(args.out, payload, indent=1)
    print(json.dumps(overall, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
