"""Brain benchmark ablation: noise level t_start, averaged reconstructions and the L1 filter.

    python benchmarks/image_brain_grid.py --size 32 \
        --out benchmarks/results/image_brain_grid_32.json

One model (the quick preset's network, trained on steps 0..--max-train-t) on the split of
``image_brain.py``; for each t_start: L1 and SSIM(σ=1.5) with one
reconstruction (K1), the mean of four maps (K4-maps), the map of the mean of four
reconstructions (K4-recmean), and L1 with a 3×3 mean filter; mean-image baseline for scale.
Each entry is (pixel AP, best Dice, Dice at the healthy 95th percentile).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_brain import SPLITS, load_brain_split, report_maps  # noqa: E402

from diffad.image.ddpm_localizer import SAMPLE_SEED_STRIDE, DDPMLocalizer  # noqa: E402
from diffad.image.scores import anomaly_score  # noqa: E402
from diffad.provenance import machine_info  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Train once, evaluate the grid, write JSON."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--max-train-t", type=int, default=400)
    p.add_argument("--channels", default="16,32,64")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--t-starts", default="100,150,200,250,300,350")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    d = load_brain_split(args.size, 0)
    loc = DDPMLocalizer(
        unet={"channels": [int(c) for c in args.channels.split(",")]},
        train_steps=args.steps,
        batch_size=32,
        lr=2e-3,
        hflip=True,
        max_shift=max(1, args.size // 16),
        max_train_t=args.max_train_t,
        verbose=False,
    )
    cpu0 = time.process_time()
    loc.fit(d["train"])
    train_cpu = time.process_time() - cpu0
    erosion = 1 if args.size <= 32 else 2

    def evaluate(fn) -> list[float]:
        r = report_maps(d, fn, erosion)
        return [round(r["pixel_ap"], 4), round(r["best_dice"], 4), round(r["dice_healthy95"], 4)]

    mean = d["train"].mean(axis=0)
    grid: dict = {"mean-diff-baseline": evaluate(lambda k: np.abs(d[k] - mean[None]).mean(1))}
    for ts in (int(v) for v in args.t_starts.split(",")):
        if ts > args.max_train_t:
            continue
        # Reconstruction j: every image with the noise draws of seed j * SAMPLE_SEED_STRIDE
        # (the draws n_samples=4 averages), at noise level ts.
        recs: dict = {k: [] for k, _ in SPLITS}
        for j in range(4):
            loc.set_params(t_start=ts, seed=j * SAMPLE_SEED_STRIDE)
            for k, _ in SPLITS:
                recs[k].append(loc.reconstruct(d[k]))
        row = {}
        for sc in ("l1", "ssim"):
            kw = {"sigma": 1.5} if sc == "ssim" else {}
            row[f"{sc}-K1"] = evaluate(
                lambda k, sc=sc, kw=kw, recs=recs: anomaly_score(d[k], recs[k][0], sc, **kw)
            )
            row[f"{sc}-K4-maps"] = evaluate(
                lambda k, sc=sc, kw=kw, recs=recs: np.mean(
                    [anomaly_score(d[k], r, sc, **kw) for r in recs[k]], 0
                )
            )
            row[f"{sc}-K4-recmean"] = evaluate(
                lambda k, sc=sc, kw=kw, recs=recs: anomaly_score(
                    d[k], np.mean(recs[k], 0), sc, **kw
                )
            )
        row["l1-meanfilter-K1"] = evaluate(
            lambda k, recs=recs: anomaly_score(d[k], recs[k][0], "l1", mean_filter=True)
        )
        grid[f"t_start={ts}"] = row
        print(ts, row, flush=True)
    result = {
        "entries": "[pixel_ap, best_dice, dice_healthy95]",
        "grid": grid,
        "train_cpu_seconds": train_cpu,
        "settings": vars(args),
        "command": "python benchmarks/image_brain_grid.py " + " ".join(map(shlex.quote, argv)),
        "machine": machine_info(),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
