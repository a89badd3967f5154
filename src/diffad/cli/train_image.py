"""``diffad train-image``: train a DDPMLocalizer on a folder or named source of normal images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_channels(text: str) -> list[int]:
    """``"32,64,128,256"`` → ``[32, 64, 128, 256]``."""
    try:
        chans = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--channels must be comma-separated integers, got {text!r}") from err
    if not chans or min(chans) < 1:
        raise ValueError(f"--channels must be positive integers, got {text!r}")
    return chans


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train-image``."""
    p = subparsers.add_parser(
        "train-image",
        help="train a DDPM on normal images for anomaly localisation",
        description=(
            "Train a DDPMLocalizer (ε-prediction U-Net) on normal images and save it as a "
            "checkpoint folder (config.json + weights.safetensors). --data is a folder or file "
            "(PNG/JPEG/NPY/NIfTI) or a named source: mni152[:LO-HI], colin27[:LO-HI], "
            "fashion-mnist:CLASS[:train|test], elpv[:normal|defective|all]."
        ),
    )
    p.add_argument("--data", required=True, help="folder, file or named source of normal images")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--steps", type=int, default=2000, help="optimiser updates (default 2000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--channels",
        default="32,64,128,256",
        help="U-Net widths per level (default: the published 32,64,128,256)",
    )
    p.add_argument("--t-start", type=int, default=250, help="reconstruction noise level")
    p.add_argument("--ddim-steps", "--n-steps", type=int, default=5, help="DDIM network calls")
    p.add_argument("--hflip", action="store_true", help="augment with left-right flips")
    p.add_argument("--max-shift", type=int, default=0, help="augment with shifts (pixels)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the images, fit, save; print one summary line."""
    import numpy as np
    import torch

    from diffad.data.images import load_image_set
    from diffad.image.ddpm_localizer import DDPMLocalizer

    if args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_image_set(args.data, args.size, limit=args.limit, seed=args.seed)
    loc = DDPMLocalizer(
        unet={"channels": parse_channels(args.channels)},
        t_start=args.t_start,
        ddim_steps=args.ddim_steps,
        train_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        hflip=args.hflip,
        max_shift=args.max_shift,
        random_state=args.seed,
        device=args.device,
        verbose=not args.quiet,
    ).fit(data.images)
    out = loc.save(args.out)
    summary = {
        "images": len(data),
        "image_shape": list(loc.image_shape_),
        "train_seconds": round(loc.train_seconds_, 2),
        "final_loss": float(np.mean(loc.loss_history_[-50:])),
        "data": args.data,
    }
    (Path(out) / "training.json").write_text(json.dumps(summary, indent=2))
    print(
        f"trained on {len(data)} images {tuple(loc.image_shape_)} in "
        f"{loc.train_seconds_:.1f} s (final loss {summary['final_loss']:.4f}) -> {out}"
    )
    return 0
