"""One-class Fashion-MNIST with a DDPMLocalizer: image-level ROC-AUC of reconstruction scores.

For each normal class: train on that class's training images, test on a seeded sample of
its test images (normal) and of the other nine classes' test images (anomalous, drawn
uniformly). Scores: L1, SSIM(σ=1.5), SSIM-ens (soft-max) and SSIM-ens-mean maps from the same
reconstructions, reduced to one number per image by mean, max and top-2 % mean; plus the
training-free |x − mean training image| baseline.

Data: the Debian package ``dataset-fashion-mnist`` (idx files).

    python benchmarks/image_fmnist.py --out benchmarks/results/image_fmnist.json
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
from _oneclass_image import set_threads, summarise, train_and_evaluate  # noqa: E402

from diffad.bench.machine import machine_info  # noqa: E402
from diffad.data.fashion_mnist import CLASSES, fashion_mnist_set, parse_class  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON results; returns an exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--classes",
        default="0,1,2",
        help="normal classes (the first three by default), comma-separated",
    )
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", default="16,32,64,128", help="U-Net widths")
    p.add_argument("--train-steps", type=int, default=700)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--t-starts", default="250,500", help="noise levels to reconstruct from")
    p.add_argument("--n-test", type=int, default=250, help="normal and anomalous test images each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny run to check the pipeline")
    p.add_argument("--out", default="benchmarks/results/image_fmnist.json")
    args = p.parse_args(argv)
    if args.quick:
        args.train_steps, args.n_test, args.classes = 30, 40, args.classes.split(",")[0]
    set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    model_params = {
        "unet": {"channels": [int(c) for c in args.channels.split(",")]},
        "train_steps": args.train_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": "auto",
    }
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
            train.images, test.images[idx], y, model_params, t_starts, seed=args.seed
        )
    result = {
        "benchmark": "Fashion-MNIST one-class, image-level ROC-AUC / AP (DDPMLocalizer)",
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine_info(),
        "settings": {**vars(args), "model_params": model_params},
        "total_seconds": round(time.perf_counter() - start, 1),
        "classes": per_class,
        "mean_roc_auc": summarise(per_class),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["mean_roc_auc"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
