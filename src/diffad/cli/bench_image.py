"""``diffad bench image``: the brain-MRI localisation benchmark (synthetic lesions)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

GROUP = "bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``diffad bench image`` and ``benchmarks/image_brain.py``."""
    p.add_argument("--size", type=int, default=64, help="image side (default 64)")
    p.add_argument("--quick", action="store_true", help="small preset, a few minutes")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--channels", default=None, help="U-Net widths, e.g. 32,64,128,256")
    p.add_argument("--steps", type=int, default=None, help="optimiser updates")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--t-start", type=int, default=None, help="default: the preset's")
    p.add_argument("--n-samples", type=int, default=None, help="reconstructions averaged per image")
    p.add_argument(
        "--ddim-steps", type=int, default=5, help="DDIM network calls (default 5)"
    )
    p.add_argument(
        "--full-t-range",
        action="store_true",
        help="train on all time steps (default: only 0..t-start, the ones localisation uses)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated maps: l1, ssim, ssim-ens, ssim-ens-mean (one DDPM), disyre, "
        "disyre-single, disyre-sampler (one DISYRE restorer); the mean-image baseline is "
        "always scored (default: the four DDPM maps)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all cores)"
    )
    p.add_argument("--quiet", action="store_true")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``image`` under ``diffad bench``."""
    p = subparsers.add_parser(
        "image",
        help="brain MRI: train on MNI152, localise synthetic lesions in Colin27",
        description=(
            "Train a DDPMLocalizer on healthy MNI152 axial slices, then score Colin27 slices "
            "(another brain) with and without SYNTHETIC lesions: pixel AP, best Dice, Dice at "
            "the healthy 95th percentile and the healthy false-positive rate for l1, ssim, "
            "ssim-ens, the DISYRE maps (--methods) and the mean-image baseline; training time "
            "and maps per second."
        ),
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, command: str | None = None) -> int:
    """Run the benchmark, write JSON, print the table."""
    import torch

    from diffad.bench.image_brain import parse_methods, run_brain_benchmark
    from diffad.cli.train_image import parse_channels

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_brain_benchmark(
        size=args.size,
        quick=args.quick,
        channels=parse_channels(args.channels) if args.channels else None,
        train_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        t_start=args.t_start,
        ddim_steps=args.ddim_steps,
        n_samples=args.n_samples,
        train_up_to_t_start=not args.full_t_range,
        seed=args.seed,
        verbose=not args.quiet,
        methods=parse_methods(args.methods),
    )
    result["command"] = command or "diffad " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(format_table(result))
    print(f"wrote {out}")
    return 0


def format_table(result: dict) -> str:
    """Markdown table of the per-method scores plus timing lines."""
    rows = [
        "| method | pixel AP | pixel AUROC | best Dice | Dice@healthy95 | healthy FPR@95 |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in result["scores"].items():
        rows.append(
            f"| {name} | {s['pixel_ap']:.3f} | {s['pixel_auroc']:.3f} | {s['best_dice']:.3f} "
            f"| {s['dice_healthy95']:.3f} | {s['healthy_fpr']:.3f} |"
        )
    size = result["settings"]["size"]
    if "train_seconds" in result:
        rows.append(
            f"\nDDPM: training {result['train_seconds']:.0f} s, "
            f"{result['maps_per_second']:.1f} maps/s at {size}px"
        )
    if "disyre" in result:
        d = result["disyre"]
        rows.append(
            f"DISYRE: training {d['train_seconds']:.0f} s, "
            f"{d['maps_per_second']:.1f} maps/s at {size}px"
        )
    return "\n".join(rows)
