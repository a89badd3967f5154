"""One-class Fashion-MNIST with a DDPM or DISYRE localiser: image-level ROC-AUC of image scores.

For each normal class: train on that class's training images, test on a seeded sample of
its test images (normal) and of the other nine classes' test images (anomalous, drawn
uniformly). Scores: L1, SSIM(σ=1.5), SSIM-ens (soft-max) and SSIM-ens-mean maps from the same
reconstructions, reduced to one number per image by mean, max and top-2 % mean, over the
whole picture and (``-fg``) inside the test image's own object mask (pixels > 0.05, dilated
by one pixel; the black background otherwise dominates SSIM maps); plus the training-free
|x − mean training image| baseline.

Data: the Debian package ``dataset-fashion-mnist`` (idx files).

    python benchmarks/image_fmnist.py --out benchmarks/results/image_fmnist.json
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
    summarise,
    train_and_evaluate,
    write_results,
)

from diffad.data.fashion_mnist import CLASSES, fashion_mnist_set, parse_class  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON results; returns an exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p, train_steps=500)
    p.add_argument(
        "--classes",
        default="0,1,2",
        help="normal classes (the first three by default), comma-separated",
    )
    p.add_argument("--n-test", type=int, default=250, help="normal and anomalous test images each")
    p.add_argument(
        "--foreground-threshold",
        type=float,
        default=0.05,
        help="also reduce maps inside each test image's own pixels above this (dilated by 1)",
    )
    p.add_argument("--out", default="benchmarks/results/image_fmnist.json")
    args = p.parse_args(argv)
    if args.quick:
        args.train_steps, args.n_test, args.classes = 30, 40, args.classes.split(",")[0]
    set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t_starts = [int(t) for t in args.t_starts.split(",")]
    test = fashion_mnist_set("all", split="test", size=args.size)
    per_class = {}
    start = time.perf_counter()
    for cls in args.classes.split(","):
        c = parse_class(cls)
        train = fashion_mnist_set(c, split="train", size=args.size)
        normal = rng.choice(np.flatnonzero(test.labels == c), args.n_test, replace=False)
        other = rng.choice(np.flatnonzero(test.labels != c), args.n_test, replace=False)
        idx = np.r_[normal, other]
        y = np.r_[np.zeros(args.n_test, int), np.ones(args.n_test, int)]
        print(f"class {CLASSES[c]}: {len(train)} training images", file=sys.stderr, flush=True)
        per_class[CLASSES[c]] = train_and_evaluate(
            train.images,
            test.images[idx],
            y,
            model_params(args),
            t_starts,
            args.seed,
            verbose=True,
            foreground_threshold=args.foreground_threshold,
            method=args.method,
        )
    summary = summarise(per_class)
    cls = "DisyreLocalizer" if args.method == "disyre" else "DDPMLocalizer"
    title = f"Fashion-MNIST one-class, image-level ROC-AUC / AP ({cls})"
    write_results(args, title, start, {"classes": per_class, "mean_roc_auc": summary})
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
