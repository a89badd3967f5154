"""Compare two ``diffad bench tabular`` result files run by run (same sets, methods, seeds).

Reports how many runs give the same ROC-AUC to the last bit, the distribution of the
differences, and the mean ROC-AUC of each file, per method.

Usage::

    python benchmarks/compare_tabular_runs.py BEFORE.json AFTER.json --out F.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffad.provenance import write_json  # noqa: E402


def compare(before: dict, after: dict) -> dict:
    """Per method: runs compared, identical runs, and ROC-AUC differences (points)."""
    key = ("dataset", "method", "seed")
    a = {tuple(r[k] for k in key): r["roc_auc"] for r in before["results"]}
    b = {tuple(r[k] for k in key): r["roc_auc"] for r in after["results"]}
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two files share no (dataset, method, seed) run")
    out = {}
    for method in sorted({k[1] for k in shared}):
        keys = [k for k in shared if k[1] == method]
        diff = 100 * np.array([b[k] - a[k] for k in keys])
        out[method] = {
            "runs": len(keys),
            "identical": int(np.sum(diff == 0)),
            "mean_roc_auc_before": 100 * float(np.mean([a[k] for k in keys])),
            "mean_roc_auc_after": 100 * float(np.mean([b[k] for k in keys])),
            "mean_difference_points": float(diff.mean()),
            "sd_difference_points": float(diff.std(ddof=1)) if len(keys) > 1 else 0.0,
            "max_abs_difference_points": float(np.abs(diff).max()),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    before, after = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    result = compare(before, after)
    write_json(
        args.out,
        {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "before": {"file": args.before, "command": before.get("command")},
            "after": {"file": args.after, "command": after.get("command")},
            "methods": result,
        },
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
