"""ELPV solar cells with a DDPM or DISYRE localiser: image-level ROC-AUC of reconstruction scores.

Normal = defect probability 0, anomalous = defect probability 1 (the uncertain 1/3 and 2/3
annotations are left out). Train on normal cells only; test on a seeded held-out set of
normal cells and a seeded sample of defective ones. Scores: L1, SSIM(σ=1.5), SSIM-ens and
SSIM-ens-mean maps from the same reconstructions, reduced by mean, max and top-2 % mean; plus the
training-free |x − mean training image| baseline.

Data: the optional PyPI package ``elpv-dataset`` (CC BY-NC-SA 4.0, non-commercial; not a
dependency of diffad).

    python benchmarks/image_elpv.py --out benchmarks/results/image_elpv.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _oneclass_image import (  # noqa: E402
    add_model_args,
    model_params,
    set_threads,
    train_and_evaluate,
    write_results,
)

from diffad.data.elpv import elpv_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON results; returns an exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p, train_steps=1000)
    p.add_argument("--n-test-normal", type=int, default=300, help="held-out normal cells")
    p.add_argument("--n-test-defective", type=int, default=715, help="defective cells (715 = all)")
    p.add_argument("--cell-type", choices=["mono", "poly"], default=None)
    p.add_argument("--out", default="benchmarks/results/image_elpv.json")
    args = p.parse_args(argv)
    if args.quick:
        args.train_steps, args.n_test_normal = 30, 40
    set_threads(args.threads)
    start = time.perf_counter()
    normal = elpv_set("normal", size=args.size, cell_type=args.cell_type)
    defective = elpv_set("defective", size=args.size, cell_type=args.cell_type)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(normal))
    test_idx, train_idx = perm[: args.n_test_normal], perm[args.n_test_normal :]
    n_def = min(40 if args.quick else args.n_test_defective, len(defective))
    def_idx = np.sort(rng.choice(len(defective), n_def, replace=False))
    x_test = np.concatenate([normal.images[test_idx], defective.images[def_idx]])
    y_test = np.r_[np.zeros(len(test_idx), int), np.ones(len(def_idx), int)]
    t_starts = [int(t) for t in args.t_starts.split(",")]
    run = train_and_evaluate(
        normal.images[train_idx],
        x_test,
        y_test,
        model_params(args),
        t_starts,
        args.seed,
        verbose=True,
        method=args.method,
    )
    cls = "DisyreLocalizer" if args.method == "disyre" else "DDPMLocalizer"
    title = f"ELPV, defect probability 0 vs 1, image-level ROC-AUC / AP ({cls})"
    write_results(args, title, start, run)
    summary = {t: {s: v["max"]["roc_auc"] for s, v in r.items() if isinstance(v, dict)}
               for t, r in run["results"].items()}  # fmt: skip
    print(json.dumps({"max-reduction roc_auc": summary, "baseline": run["baseline"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
