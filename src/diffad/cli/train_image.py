"""``diffad train-image``: train an image localiser (DDPM or DISYRE) on normal images."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from diffad.cli._images import add_input_args, add_runtime_args, read_images, set_threads
from diffad.image import (
    IMAGE_SCORES,
    INFERENCE_MODES,
    LOCALIZER_METHODS,
    MIN_CALIBRATION_IMAGES,
    SCORES,
)
from diffad.image.preprocessing import INTENSITIES, describe
from diffad.selective import REGION_TEST_FOLDER


def parse_channels(text: str, option: str = "--channels", minimum: int = 1) -> list[int]:
    """``"32,64,128,256"`` → ``[32, 64, 128, 256]`` (integers >= ``minimum``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"{option} must be comma-separated integers, got {text!r}") from err
    if not values or min(values) < minimum:
        raise ValueError(f"{option} must be integers >= {minimum}, got {text!r}")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train-image``."""
    p = subparsers.add_parser(
        "train-image",
        help="train a DDPM or DISYRE localiser on normal images",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Train an image localiser on normal images -- a DDPM (--method ddpm: ε-prediction "
            "U-Net, partial-noise reconstruction) or DISYRE v2 (--method disyre: a U-Net that "
            "restores synthetic anomalies, map averaged over severities) -- calibrate it on "
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
        "--paired-references",
        default=None,
        help="one healthy reference per calibration image for the region test: a folder "
        "matched by file name, or a registered healthy brain (mni152, colin27) matched by "
        "slice position; then diffad test needs --paired-references too",
    )
    p.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.25,
        help="share of --data held out for calibration when --calibration is not given; "
        "0 skips calibration",
    )
    p.add_argument(
        "--method",
        choices=LOCALIZER_METHODS,
        default="disyre",
        help="localiser to train; disyre is the default because it ranked first in image "
        "ROC-AUC over digits, Fashion-MNIST, brain MRI and ELPV (docs/benchmarks/image_defaults.md)"
    )
    p.add_argument(
        "--score",
        choices=SCORES,
        default=None,
        help="anomaly map (ddpm; default l1: it beat ssim-ens in all 9 matched comparisons "
        "of docs/benchmarks/image_defaults.md)"
    )
    p.add_argument(
        "--image-score",
        choices=IMAGE_SCORES,
        default="mean",
        help="map -> image score; mean ranked best for DISYRE and for every DDPM map and noise "
        "level (docs/benchmarks/image_defaults.md)",
    )
    p.add_argument("--steps", type=int, default=2000, help="optimiser updates")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--channels",
        default=None,
        help="U-Net widths per level (default: ddpm the published 32,64,128,256; disyre "
        "16,32,64,128)",
    )
    ddpm = p.add_argument_group("ddpm options")
    ddpm.add_argument(
        "--t-start",
        type=int,
        default=None,
        help="reconstruction noise level (ddpm; default 150: it ranked ahead of 250 and 500 "
        "with the l1 map, docs/benchmarks/image_defaults.md)",
    )
    ddpm.add_argument(
        "--ddim-steps", type=int, default=None, help="DDIM network calls (default 5)"
    )
    ddpm.add_argument("--hflip", action="store_true", help="augment with left-right flips")
    ddpm.add_argument(
        "--max-shift", type=int, default=None, help="augment with shifts (pixels; default 0)"
    )
    disyre = p.add_argument_group("disyre options")
    disyre.add_argument(
        "--severities",
        default=None,
        help="severity steps of the map, comma-separated (default 99,74,49,24; one step is "
        "the single-severity ablation)",
    )
    disyre.add_argument(
        "--inference",
        choices=INFERENCE_MODES,
        default=None,
        help="ensemble: one restoration per severity; sampler: multi-step cold diffusion "
        "(default ensemble)",
    )
    disyre.add_argument(
        "--foreground-threshold",
        type=float,
        default=None,
        help="pixels at or below it (after preprocessing) are background: never corrupted, "
        "map 0 (brain MRI: 0; default: no background)",
    )
    disyre.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="train on crops of this side, restore by sliding windows (default: whole images)",
    )
    disyre.add_argument(
        "--no-augment", action="store_true", help="no flips, rotation, scaling, gamma, brightness"
    )
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


_DDPM_ONLY = ("score", "t_start", "ddim_steps", "max_shift")
_DISYRE_ONLY = ("severities", "inference", "foreground_threshold", "patch_size")


def _method_options(args: argparse.Namespace) -> dict:
    """The localiser's own parameters from the options of its group; another group's
    options are an error rather than silently ignored."""
    if args.method == "ddpm":
        wrong = [n for n in _DISYRE_ONLY if getattr(args, n) is not None] + (
            ["no_augment"] if args.no_augment else []
        )
    else:
        wrong = [n for n in _DDPM_ONLY if getattr(args, n) is not None] + (
            ["hflip"] if args.hflip else []
        )
    if wrong:
        names = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise ValueError(f"{names} do(es) not apply to --method {args.method}")
    if args.method == "ddpm":
        return {
            "t_start": 150 if args.t_start is None else args.t_start,
            "ddim_steps": 5 if args.ddim_steps is None else args.ddim_steps,
            "hflip": args.hflip,
            "max_shift": args.max_shift or 0,
            "score": args.score or "l1",
        }
    options: dict = {"augment": not args.no_augment}
    if args.severities is not None:
        options["severities"] = tuple(parse_channels(args.severities, "--severities", 0))
    if args.inference is not None:
        options["inference"] = args.inference
    for name in ("foreground_threshold", "patch_size"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def _calibrate_region_test(loc: Any, images: Any, references: Any, out: Path) -> Any:
    """Calibrate the region test (reference, noise model, λ, healthy nulls) on the healthy
    calibration images (with their paired ``references``, if any) and store it in
    ``out/region_test``; None (with a note) when the model's map cannot be traced."""
    from diffad.selective.dal import SelectiveTest

    try:
        tester = SelectiveTest(loc).calibrate(images, references)
    except ValueError as err:
        print(f"note: no region test for this model: {err}")
        return None
    tester.save(Path(out) / REGION_TEST_FOLDER)
    return tester


def run(args: argparse.Namespace) -> int:
    """Load the images, fit, calibrate, save; print a summary."""
    from diffad.image.localizers import localizer_class

    if args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    unet = None if args.channels is None else {"channels": parse_channels(args.channels)}
    options = _method_options(args)
    set_threads(args.threads)
    data = read_images(args, args.data, args.size, limit_seed=args.seed)
    if args.calibration is not None:
        train, cal = data, read_images(args, args.calibration, args.size, limit_seed=args.seed)
    else:
        train_idx, cal_idx = split_calibration(len(data), args.calibration_fraction, args.seed)
        train, cal = data.subset(train_idx), (data.subset(cal_idx) if len(cal_idx) else None)
    if args.paired_references is not None and cal is None:
        raise ValueError("--paired-references needs calibration images (no calibration share)")
    loc = localizer_class(args.method)(
        unet=unet,
        train_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        random_state=args.seed,
        device=args.device,
        verbose=not args.quiet,
        preprocessing={
            "intensity": args.intensity,
            "resize": args.resize,
            "size": (args.size,) * 2,
        },
        image_score=args.image_score,
        **options,
    ).fit(train.images)
    out = loc.save(args.out)  # saved first: a calibration error must not lose the training
    # A region test left in the folder by an earlier model must never pass for this one's.
    shutil.rmtree(Path(out) / REGION_TEST_FOLDER, ignore_errors=True)
    tester = None
    if cal is not None:
        try:
            loc.calibrate(cal.images)
        except ValueError as err:
            raise ValueError(
                f"the model is saved, uncalibrated, in {out}; calibration failed: {err}"
            ) from err
        loc.save(args.out)
        references = None
        if args.paired_references is not None:
            from diffad.data.references import paired_references

            spec = args.calibration or args.data
            references = paired_references(
                cal, spec, args.paired_references, args.size, npy_3d=args.npy_3d, axis=args.axis
            )
        tester = _calibrate_region_test(loc, cal.images, references, out)
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
            f"{loc.threshold_:.4g} ({loc.image_score} {loc.score})"
            + (
                ""
                if tester is None
                else f", region-test λ {tester.lam_:.4g}, noise covariance "
                f"{tester.noise_kind_}, {len(tester.check_images_)} kept for the check"
            )
        )
        if tester is not None:
            print(tester.noise_check_.message())
    print(f"model: {out}")
    return 0
