"""``diffad train-image``: train a DDPMLocalizer on a folder or named source of normal images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffad.cli._images import add_input_args, add_runtime_args, read_images, set_threads
from diffad.image import IMAGE_SCORES, MIN_CALIBRATION_IMAGES, SCORES
from diffad.image.preprocessing import INTENSITIES, describe


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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Train a DDPMLocalizer (ε-prediction U-Net) on normal images, calibrate it on "
            "held-out normal images (image threshold, pixel thresholds, noise model and λ of "
            "the region test, conformal calibration scores) and save it as a checkpoint folder "
            "(config.json + weights.safetensors). The preprocessing (size, channels, intensity "
            "range) is fitted here and stored with the model: localize, test and report apply "
            "it unchanged."
        ),
    )
    add_input_args(p, "--data")
    p.add_argument("--size", type=int, default=64, help="model image side in pixels")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument(
        "--intensity",
        choices=INTENSITIES,
        default="range",
        help="range: one 1st-99th percentile range of all training pixels -> [0, 1]; "
        "per-image: each image's own; none: images already in [0, 1]",
    )
    p.add_argument(
        "--resize",
        action="store_true",
        help="let the model resize inputs of any size later (default: only the training "
        "images' size is accepted)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="normal images for calibration (default: hold out --calibration-fraction of --data)",
    )
    p.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.25,
        help="share of --data held out for calibration when --calibration is not given; "
        "0 skips calibration",
    )
    p.add_argument("--score", choices=SCORES, default="ssim-ens", help="anomaly map")
    p.add_argument("--image-score", choices=IMAGE_SCORES, default="max", help="map -> image")
    p.add_argument("--steps", type=int, default=2000, help="optimiser updates")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--channels",
        default="32,64,128,256",
        help="U-Net widths per level (the published 32,64,128,256)",
    )
    p.add_argument("--t-start", type=int, default=250, help="reconstruction noise level")
    p.add_argument("--ddim-steps", "--n-steps", type=int, default=5, help="DDIM network calls")
    p.add_argument("--hflip", action="store_true", help="augment with left-right flips")
    p.add_argument("--max-shift", type=int, default=0, help="augment with shifts (pixels)")
    p.add_argument("--seed", type=int, default=0)
    add_runtime_args(p)
    p.set_defaults(func=run)


def split_calibration(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, calibration) of ``n`` images, a seeded share ``fraction`` held out."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--calibration-fraction must be in [0, 1), got {fraction}")
    n_cal = int(round(fraction * n))
    if fraction > 0 and (n_cal < MIN_CALIBRATION_IMAGES or n - n_cal < 2):
        raise ValueError(
            f"{n} image(s) are too few to hold out {fraction:g} for calibration (needs "
            f"{MIN_CALIBRATION_IMAGES} calibration and 2 training images); give --calibration or "
            "--calibration-fraction 0"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_cal:]), np.sort(perm[:n_cal])


def run(args: argparse.Namespace) -> int:
    """Load the images, fit, calibrate, save; print a summary."""
    from diffad.image.ddpm_localizer import DDPMLocalizer

    if args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    channels = parse_channels(args.channels)
    set_threads(args.threads)
    data = read_images(args, args.data, args.size)
    if args.calibration is not None:
        train, cal = data, read_images(args, args.calibration, args.size)
    else:
        train_idx, cal_idx = split_calibration(len(data), args.calibration_fraction, args.seed)
        train, cal = data.subset(train_idx), (data.subset(cal_idx) if len(cal_idx) else None)
    loc = DDPMLocalizer(
        unet={"channels": channels},
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
        preprocessing={
            "intensity": args.intensity,
            "resize": args.resize,
            "size": (args.size,) * 2,
        },
        score=args.score,
        image_score=args.image_score,
    ).fit(train.images)
    out = loc.save(args.out)  # saved first: a calibration error must not lose the training
    if cal is not None:
        try:
            loc.calibrate(cal.images)
        except ValueError as err:
            raise ValueError(
                f"the model is saved, uncalibrated, in {out}; calibration failed: {err}"
            ) from err
        loc.save(args.out)
    summary = {
        "images": len(train),
        "calibration_images": 0 if cal is None else len(cal),
        "image_shape": list(loc.image_shape_),
        "preprocessing": describe(loc.preprocessing_, loc.image_shape_),
        "train_seconds": round(loc.train_seconds_, 2),
        "final_loss": float(np.mean(loc.loss_history_[-50:])),
        "data": args.data,
    }
    (Path(out) / "training.json").write_text(json.dumps(summary, indent=2))
    print(
        f"trained on {len(train)} images {tuple(loc.image_shape_)} in "
        f"{loc.train_seconds_:.1f} s (final loss {summary['final_loss']:.4f}); "
        f"{summary['preprocessing']}"
    )
    if cal is None:
        print("not calibrated: localize gives maps and scores but no thresholds or p-values")
    else:
        print(
            f"calibrated on {len(cal)} held-out normal images: image threshold "
            f"{loc.threshold_:.4g} ({loc.image_score} {loc.score}), region-test λ {loc.lam_:.4g}, "
            f"noise covariance {loc.noise_kind_}, {len(loc.check_images_)} kept for the check"
        )
    print(f"model: {out}")
    return 0
