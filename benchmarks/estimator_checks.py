"""scikit-learn's ``check_estimator`` on diffad's detectors and on PyOD's KNN, side by side.

Runs every check without expected failures and records, per estimator, how many passed,
failed and were skipped, and the names and first line of each failure.

Usage::

    python benchmarks/estimator_checks.py --out benchmarks/results/estimator_checks.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings

import torch
from pyod.models.knn import KNN
from sklearn.utils.estimator_checks import check_estimator

from diffad import (
    ConformalDetector,
    DDPMDetector,
    DTECategorical,
    DTEInverseGamma,
    DTENonParametric,
)
from diffad.provenance import machine_info, write_json

SMALL = {"epochs": 2, "max_steps": 4, "batch_size": 16, "verbose": False, "device": "cpu"}


def estimators() -> dict:
    return {
        "pyod.KNN": KNN(),
        "DTENonParametric": DTENonParametric(k=3, device="cpu"),
        "DTECategorical": DTECategorical(hidden_sizes=(8,), **SMALL),
        "DTEInverseGamma": DTEInverseGamma(hidden_sizes=(8,), **SMALL),
        "DDPMDetector": DDPMDetector(
            width=8, hidden=8, n_blocks=1, time_dim=8, n_reverse_steps=3, **SMALL
        ),
        "ConformalDetector(DTENonParametric)": ConformalDetector(
            DTENonParametric(k=3, device="cpu"), random_state=0
        ),
    }


def run(estimator) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    failed = [r for r in results if r["status"] == "failed"]
    return {
        "n_checks": len(results),
        "passed": sum(r["status"] == "passed" for r in results),
        "failed": len(failed),
        "skipped": sum(r["status"] == "skipped" for r in results),
        "failures": [
            {
                "check": r["check_name"],
                "error": (str(r["exception"]).strip().splitlines() or [""])[0][:200],
            }
            for r in failed
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = {}
    for name, est in estimators().items():
        table[name] = run(est)
        print(f"{name}: {table[name]['passed']} passed, {table[name]['failed']} failed")
    import sklearn

    write_json(
        args.out,
        {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "machine": machine_info(),
            "scikit_learn": sklearn.__version__,
            "estimators": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
