"""``diffad localize``: anomaly maps (.npy) and overlay pictures (.png) for test images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffad.image import SCORES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``localize``."""
    p = subparsers.add_parser(
        "localize",
        help="anomaly maps for test images with a trained DDPM",
        description=(
            "Reconstruct test images with a model from `diffad train-image` and write anomaly "
            "maps: maps.npy (N, H, W), names.txt, scores.json (per-image max and mean) and one "
            "overlay PNG per image (up to --max-png)."
        ),
    )
    p.add_argument("--model", required=True, help="checkpoint folder from train-image")
    p.add_argument("--images", required=True, help="folder, file or named source")
    p.add_argument("--score", choices=SCORES, default="ssim-ens")
    p.add_argument("--sigma", type=float, default=None, help="SSIM window σ (score ssim)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="reconstruction noise seed")
    p.add_argument("--t-start", type=int, default=None, help="override the model's noise level")
    p.add_argument(
        "--ddim-steps", "--n-steps", type=int, default=None, help="override the DDIM calls"
    )
    p.add_argument(
        "--postprocess",
        action="store_true",
        help="mask to the foreground (pixels > 0, eroded by --erosion) and median-filter (5)",
    )
    p.add_argument("--erosion", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--max-png", type=int, default=64, help="overlay pictures to write")
    p.add_argument("--device", default=None, help="override the stored device")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def save_overlay(path: Path, image, amap, title: str) -> None:
    """Grey image with the anomaly map as a semi-transparent heat map, plus the map alone."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].imshow(amap, cmap="inferno", alpha=0.5)
    axes[1].imshow(amap, cmap="inferno")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Load model and images, compute maps, write the outputs."""
    import numpy as np

    from diffad.data.images import load_image_set
    from diffad.image.ddpm_localizer import DDPMLocalizer
    from diffad.image.postprocess import foreground_mask, postprocess

    loc = DDPMLocalizer.load(args.model, device=args.device)
    loc.set_params(verbose=not args.quiet)
    c, h, w = loc.image_shape_
    if h != w:
        raise ValueError(f"the model takes {h}x{w} images; loaders produce square images")
    data = load_image_set(args.images, h, limit=args.limit, seed=0)
    kwargs = {"sigma": args.sigma} if args.sigma is not None and args.score == "ssim" else {}
    maps = loc.anomaly_map(
        data.images,
        score=args.score,
        seed=args.seed,
        t_start=args.t_start,
        ddim_steps=args.ddim_steps,
        **kwargs,
    )
    if args.postprocess:
        mask = data.masks if data.masks is not None else foreground_mask(data.images)
        maps = postprocess(maps, mask, erosion=args.erosion)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "maps.npy", maps.astype(np.float32))
    names = data.names or [f"image{i}" for i in range(len(maps))]
    (out / "names.txt").write_text("\n".join(names) + "\n")
    per_image = [
        {"name": n, "max": float(m.max()), "mean": float(m.mean())}
        for n, m in zip(names, maps, strict=True)
    ]
    (out / "scores.json").write_text(
        json.dumps({"score": args.score, "images": per_image}, indent=1)
    )
    n_png = min(len(maps), max(args.max_png, 0))
    for i in range(n_png):
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in names[i])
        save_overlay(out / f"{i:04d}_{safe}.png", data.images[i].mean(axis=0), maps[i], names[i])
    print(f"wrote {len(maps)} {args.score} maps ({n_png} overlays) to {out}")
    return 0
