"""ELPV solar cells with a DDPMLocalizer: image-level ROC-AUC of reconstruction scores.

Normal = defect probability 0, anomalous = defect probability 1 (the uncertain 1/3 and 2/3
annotations are left out). Train on normal cells only; test on a seeded held-out set of
normal cells and all defective ones. Scores: L1, SSIM(σ=1.5), SSIM-ens and SSIM-ens-mean
maps from the same reconstructions, reduced by mean, max and top-2 % mean; plus the
training-free |x − mean training image| baseline.

Data: the optional PyPI package ``elpv-dataset`` (CC BY-NC-SA 4.0, non-commercial; not a
dependency of diffad).

    python benchmarks/image_elpv.py --out benchmarks/results/image_elpv.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _oneclass_image import set_threads, train_and_evaluate  # noqa: E402

from diffad.bench.machine import machine_info  # noqa: E402
from diffad.data.elpv import elpv_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON results; returns an exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", default="16,32,64,128", help="U-Net widths")
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--t-starts", default="250,500", help="noise levels to reconstruct from")
    p.add_argument("--n-test-normal", type=int, default=300, help="held-out normal cells")
    p.add_argument("--cell-type", choices=["mono", "poly"], default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny run to check the pipeline")
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
    def_idx = np.arange(len(defective))
    if args.quick:
        def_idx = np.sort(rng.choice(def_idx, 40, replace=False))
    x_test = np.concatenate([normal.images[test_idx], defective.images[def_idx]])
    y_test = np.r_[np.zeros(len(test_idx), int), np.ones(len(def_idx), int)]
    model_params = {
        "unet": {"channels": [int(c) for c in args.channels.split(",")]},
        "train_steps": args.train_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": "auto",
    }
    t_starts = [int(t) for t in args.t_starts.split(",")]
    run = train_and_evaluate(
        normal.images[train_idx], x_test, y_test, model_params, t_starts, seed=args.seed
    )
    result = {
        "benchmark": "ELPV, defect probability 0 vs 1, image-level ROC-AUC / AP (DDPMLocalizer)",
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine_info(),
        "settings": {**vars(args), "model_params": model_params},
        "total_seconds": round(time.perf_counter() - start, 1),
        **run,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    summary = {t: {s: v["max"]["roc_auc"] for s, v in r.items() if isinstance(v, dict)}
               for t, r in run["results"].items()}  # fmt: skip
    print(json.dumps({"max-reduction roc_auc": summary, "baseline": run["baseline"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
