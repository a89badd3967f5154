"""Probe the ``unsup`` protocol where even PyOD's KNN misses the published ROC-AUC.

Runs PyOD KNN (defaults) under several readings of the unsupervised protocol and prints
their ROC-AUC next to the published KNN value, to see which reading (if any) the published
numbers follow. Readings:

- ``bootstrap``: diffad's ``unsup`` (fit on a bootstrap of the whole set, score the whole set);
- ``whole``: fit on the whole set, score the whole set;
- ``whole_loo``: fit on the whole set, each row scored without itself (PyOD's training scores);
- ``bootstrap_normals``: fit on a bootstrap of the normal rows only (not unsupervised);
- ``split_30``: stratified 70/30 split, fit on the contaminated 70 %, score the 30 % (ADBench).

Example::

    python benchmarks/unsup_protocol_probe.py --datasets cardio,musk,wbc
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from pyod.models.knn import KNN
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from diffad.bench.results import write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "adbench" / "Classical"


def readings(X: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    """ROC-AUC (%) of PyOD KNN under each reading of the protocol, for one seed."""
    from diffad.data.adbench import make_split
    from diffad.metrics.detection import roc_auc

    out = {}
    split = make_split(X, y, "unsup", seed)
    out["bootstrap"] = roc_auc(y_true=split.y_test, scores=_knn(split.X_train, split.X_test))
    Z = StandardScaler().fit_transform(X)
    out["whole"] = roc_auc(y, _knn(Z, Z))
    out["whole_loo"] = roc_auc(y, KNN().fit(Z).decision_scores_)
    normal = np.flatnonzero(y == 0)
    boot = np.random.RandomState(seed).choice(normal, normal.size, replace=True)
    out["bootstrap_normals"] = roc_auc(y, _knn(Z[boot], Z))
    X_tr, X_te, _, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(X_tr)
    out["split_30"] = roc_auc(y_te, _knn(scaler.transform(X_tr), scaler.transform(X_te)))
    return {k: 100.0 * v for k, v in out.items()}


def _knn(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    return KNN().fit(train).decision_function(test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--datasets", default="cardio,musk,wbc")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "unsup_protocol_probe.json")
    )
    args = parser.parse_args(argv)

    from diffad.bench.machine import machine_info
    from diffad.bench.published import PUBLISHED_ROCAUC
    from diffad.bench.tabular import select_files
    from diffad.data.adbench import family_name, load_npz

    known = list(PUBLISHED_ROCAUC["unsup"])
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for path in select_files(args.data_dir, args.datasets.split(",")):
        X, y = load_npz(path)
        per_seed = [readings(X, y, s) for s in seeds]
        family = family_name(path, known)
        row = {
            "dataset": family,
            "published_knn_unsup": PUBLISHED_ROCAUC["unsup"][family]["KNN"][0],
            **{k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    payload = {
        "command": "python benchmarks/unsup_protocol_probe.py " + shlex.join(sys.argv[1:]),
        "machine": machine_info(),
        "seeds": seeds,
        "rows": rows,
    }
    write_json(args.out, payload, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
