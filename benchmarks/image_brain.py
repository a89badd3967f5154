"""Brain-MRI localisation benchmark: train on one healthy brain, find synthetic lesions in another.

    python benchmarks/image_brain.py --size 32 --quick --out F.json    # a few minutes
    python benchmarks/image_brain.py --size 64 --out benchmarks/results/image_brain_64.json
    python benchmarks/image_brain.py --size 32 --quick --methods disyre,l1 --out F.json

Split (chosen so that no test pixel was seen in training and thresholds are not tuned on
the test images):

- **train**: axial slices of the MNI152 template (nilearn), the band ``BAND`` of the brain's
  inferior→superior extent, with left-right flips and small shifts as augmentation;
- **healthy validation**: the even-numbered Colin27 slices of the same band (a different
  brain, mricron-data) — their pixel scores set the unsupervised thresholds (95th/99th
  percentile inside the brain);
- **test**: the odd-numbered Colin27 slices, once with SYNTHETIC lesions
  (:func:`diffad.data.synthetic.lesion_dataset`: ellipses/blobs, hyper/hypo-intense, foreign
  texture or noise) for pixel AP / Dice, once unchanged for the healthy false-positive rate.

Every map is post-processed the same way (brain mask eroded by ``erosion`` px, median filter
5) and scored inside the brain mask with :func:`diffad.metrics.localization.localization_report`.
Methods: ``l1``, ``ssim`` (σ = 1.5), ``ssim-ens``, ``ssim-ens-mean`` on the same DDPM
reconstructions; ``disyre``, ``disyre-single``, ``disyre-sampler`` from one DISYRE restorer
(``image_brain_disyre.py`` beside this script); and ``mean-diff-baseline`` = |X − mean
training image|, always scored.

Other scripts import the split and presets from here (``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import copy
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_brain_disyre import DISYRE_METHODS, run_disyre  # noqa: E402

from diffad.data.brain import BAND, brain_split  # noqa: E402  (the demo's split too)
from diffad.image.ddpm_localizer import DDPMLocalizer  # noqa: E402
from diffad.image.postprocess import postprocess  # noqa: E402
from diffad.image.scores import anomaly_score  # noqa: E402
from diffad.provenance import machine_info, write_result  # noqa: E402

DDPM_METHODS = ("l1", "ssim", "ssim-ens", "ssim-ens-mean")
BASELINE = "mean-diff-baseline"
METHODS = (*DDPM_METHODS, *DISYRE_METHODS, BASELINE)

# Settings chosen by measurement on 2 CPU cores (docs/benchmarks/image.md); ``quick`` trades
# quality for a run of a few minutes at 32×32.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        # 2400 steps: 1 121 CPU-s on one core (19 min); 1200 steps stayed below the baseline.
        "channels": [16, 32, 64, 128],
        "train_steps": 2400,
        "batch_size": 32,
        "t_start": 150,
        "n_samples": 4,
    },
    "quick": {
        "channels": [16, 32, 64],
        "train_steps": 1500,
        "batch_size": 32,
        "t_start": 150,
        "n_samples": 4,
    },
}


def load_brain_split(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Train / healthy-validation / test (with synthetic lesions) arrays; see module docstring."""
    from diffad.data.synthetic import lesion_dataset

    split = brain_split(size)
    train, val, test = split["train"], split["calibration"], split["test"]
    lesioned, truth = lesion_dataset(test.images, test.masks, donors=val.images, seed=seed)
    return {
        "train": train.images,
        "train_masks": train.masks[:, 0],
        "val": val.images,
        "val_masks": val.masks[:, 0],
        "test": lesioned,
        "test_healthy": test.images,
        "test_masks": test.masks[:, 0],
        "truth": truth[:, 0],
    }


SPLITS = (("val", "val_masks"), ("test", "test_masks"), ("test_healthy", "test_masks"))


def report_maps(data: dict[str, np.ndarray], maps_of, erosion: int) -> dict[str, float]:
    """Post-process the raw maps of every split and score them inside the brain.

    Parameters
    ----------
    data : dict
        From :func:`load_brain_split`.
    maps_of : callable
        ``maps_of(split_name)`` → raw (N, H, W) maps of that split.
    erosion : int
        Brain-mask erosion of the post-processing.

    Returns
    -------
    dict
        :func:`diffad.metrics.localization.localization_report` of the lesion test maps,
        thresholds from healthy validation, false-positive rates on the healthy test images.
    """
    from diffad.metrics.localization import localization_report

    m = {k: postprocess(maps_of(k), data[mk], erosion=erosion) for k, mk in SPLITS}
    return localization_report(
        m["test"],
        data["truth"],
        m["val"],
        masks=data["test_masks"],
        healthy_val_masks=data["val_masks"],
        healthy_test_maps=m["test_healthy"],
        healthy_test_masks=data["test_masks"],
    )


def _maps(
    x: np.ndarray, rec: np.ndarray | None, method: str, mean_image: np.ndarray | None
) -> np.ndarray:
    if method == BASELINE:
        return np.abs(x - mean_image[None]).mean(axis=1)
    kwargs = {"sigma": 1.5} if method == "ssim" else {}
    return anomaly_score(x, rec, method, **kwargs)


def time_maps(
    loc: DDPMLocalizer, images: np.ndarray, n_samples: int = 1, repeats: int = 3
) -> tuple[float, float]:
    """Anomaly maps (SSIM-ens, reconstruction included) per second, median of ``repeats``
    (repeat r reconstructs with the noise of seed r, on a copy of ``loc``).

    Returns
    -------
    per_second : float
        Maps per wall-clock second.
    per_cpu_second : float
        Maps per CPU second of this process (all threads), robust to other jobs.
    """
    timed = copy.deepcopy(loc).set_params(score="ssim-ens", n_samples=n_samples)
    wall, cpu = [], []
    for r in range(repeats):
        timed.set_params(seed=r)
        w0, c0 = time.perf_counter(), time.process_time()
        timed.anomaly_map(images)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return len(images) / statistics.median(wall), len(images) / statistics.median(cpu)


def _metrics(rep: dict[str, float]) -> dict[str, float]:
    return {
        "pixel_ap": rep["pixel_ap"],
        "pixel_auroc": rep["pixel_auroc"],
        "best_dice": rep["best_dice"],
        "dice_healthy95": rep["dice_healthy95"],
        "dice_healthy99": rep["dice_healthy99"],
        "healthy_fpr": rep["healthy_fpr95"],
        "healthy_fpr99": rep["healthy_fpr99"],
    }


def score_methods(
    data: dict[str, np.ndarray],
    loc: DDPMLocalizer,
    seed: int,
    n_samples: int,
    erosion: int,
    methods: tuple[str, ...] = DDPM_METHODS,
) -> dict[str, dict[str, float]]:
    """Localisation metrics of the DDPM ``methods`` on the same reconstructions (the mean
    of ``n_samples``, every image with the noise draws of ``seed``)."""
    rec_loc = copy.deepcopy(loc).set_params(seed=seed, n_samples=n_samples)
    recs = {k: rec_loc.reconstruct(data[k]) for k in ("val", "test", "test_healthy")}
    return {
        method: _metrics(
            report_maps(data, lambda k, method=method: _maps(data[k], recs[k], method, None),
                        erosion)  # fmt: skip
        )
        for method in methods
    }


def score_baseline(data: dict[str, np.ndarray], erosion: int) -> dict[str, float]:
    """Metrics of |X − mean training image| (no training)."""
    mean_image = data["train"].mean(axis=0)
    return _metrics(
        report_maps(data, lambda k: _maps(data[k], None, BASELINE, mean_image), erosion)
    )


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``"disyre,l1"`` → the methods in the order given (default: the DDPM maps)."""
    if text is None:
        return DDPM_METHODS
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return methods


def reproducibility(loc: DDPMLocalizer, probe: np.ndarray, seed: int) -> dict[str, Any]:
    """Same seed → identical maps; another seed → different maps (one reconstruction each,
    the localiser's ``score``; the seed is set on copies of ``loc``)."""
    same = copy.deepcopy(loc).set_params(seed=seed, n_samples=1)
    other = copy.deepcopy(same).set_params(seed=seed + 1)
    a = same.anomaly_map(probe)
    return {
        "same_seed_identical": bool(np.array_equal(a, same.anomaly_map(probe))),
        "other_seed_max_abs_diff": float(np.abs(a - other.anomaly_map(probe)).max()),
    }


def run_brain_benchmark(
    size: int = 64,
    quick: bool = False,
    channels: list[int] | None = None,
    train_steps: int | None = None,
    batch_size: int | None = None,
    lr: float = 2e-3,
    t_start: int | None = None,
    ddim_steps: int = 5,
    n_samples: int | None = None,
    train_up_to_t_start: bool = True,
    erosion: int | None = None,
    seed: int = 0,
    verbose: bool = True,
    methods: tuple[str, ...] = DDPM_METHODS,
) -> dict[str, Any]:
    """Train on MNI152, evaluate on Colin27 with and without synthetic lesions.

    Parameters
    ----------
    size : int
        Image side (32 or 64 typical).
    quick : bool
        Use the small ``quick`` preset (few minutes) instead of ``full``.
    channels, train_steps, batch_size : optional
        Override the preset's U-Net widths, optimiser updates and mini-batch size.
    lr : float
        Adam learning rate (cosine-decayed).
    t_start, ddim_steps : int
        Reconstruction noise level (default: the preset's) and DDIM calls.
    n_samples : int, optional
        Reconstructions averaged per image (default: the preset's).
    train_up_to_t_start : bool
        Train only on steps 0..t_start (``max_train_t``), the ones localisation uses.
    erosion : int, optional
        Brain-mask erosion in pixels (default: 1 at <= 32 px, 2 above).
    seed : int
        Seed of training, lesions and reconstruction noise.
    verbose : bool
        Progress bars.
    methods : tuple of str
        Maps to score (``METHODS``); the DDPM is trained only when a DDPM map is asked
        for, the DISYRE restorer only when a DISYRE one is. The baseline is always scored.

    Returns
    -------
    dict
        ``scores`` (per method: pixel_ap, pixel_auroc, best_dice, dice_healthy95,
        dice_healthy99, healthy_fpr = healthy_fpr95, healthy_fpr99); for the DDPM (when
        trained) ``train_seconds``, ``maps_per_second``, ``reproducible`` checks at the top
        level as before; ``disyre`` (when trained: its timings and settings);
        ``settings`` and ``data`` sizes.
    """
    preset = dict(PRESETS["quick" if quick else "full"])
    cfg = {
        "channels": channels or preset["channels"],
        "train_steps": train_steps or preset["train_steps"],
        "batch_size": batch_size or preset["batch_size"],
    }
    t_start = preset["t_start"] if t_start is None else t_start
    n_samples = preset["n_samples"] if n_samples is None else n_samples
    erosion = (1 if size <= 32 else 2) if erosion is None else erosion
    data = load_brain_split(size, seed)
    result: dict[str, Any] = {"scores": {}}
    ddpm_methods = tuple(m for m in methods if m in DDPM_METHODS)
    if ddpm_methods:
        result.update(
            _run_ddpm(data, ddpm_methods, cfg, lr, t_start, ddim_steps, n_samples,
                      train_up_to_t_start, erosion, size, seed, verbose)  # fmt: skip
        )
    disyre_methods = [m for m in methods if m in DISYRE_METHODS]
    if disyre_methods:
        disyre = run_disyre(
            data, disyre_methods, lambda maps_of: _metrics(report_maps(data, maps_of, erosion)),
            quick, channels=channels,
            train_steps=train_steps, batch_size=batch_size, lr=lr, seed=seed, verbose=verbose,
        )  # fmt: skip
        result["scores"].update(disyre.pop("scores"))
        result["disyre"] = disyre
    result["scores"][BASELINE] = score_baseline(data, erosion)
    return {
        **result,
        "settings": {
            "size": size,
            "quick": quick,
            "methods": list(methods),
            **cfg,
            "lr": lr,
            "t_start": t_start,
            "n_steps": ddim_steps,
            "n_samples": n_samples,
            "max_train_t": t_start if train_up_to_t_start else None,
            "erosion": erosion,
            "seed": seed,
            "band": list(BAND),
            "ssim_sigma": 1.5,
            "timing": "DDPM: median of 3 runs of anomaly_map(ssim-ens) on up to 32 test "
            "images, n_samples reconstructions included",
        },
        "data": {
            "train": "mni152 (nilearn) axial slices",
            "healthy_validation": "colin27 (mricron-data) even slices",
            "test": "colin27 odd slices with SYNTHETIC lesions / without (healthy FPR)",
            "n_train": len(data["train"]),
            "n_val": len(data["val"]),
            "n_test": len(data["test"]),
            "lesion_pixel_fraction": float(data["truth"][data["test_masks"]].mean()),
        },
        "machine": machine_info(),
    }


def _run_ddpm(data, methods, cfg, lr, t_start, ddim_steps, n_samples, train_up_to_t_start,
              erosion, size, seed, verbose) -> dict[str, Any]:  # fmt: skip
    """Train the DDPM localiser and score its maps (see :func:`run_brain_benchmark`)."""
    cpu_start = time.process_time()
    loc = DDPMLocalizer(
        unet={"channels": cfg["channels"]},
        t_start=t_start,
        ddim_steps=ddim_steps,
        train_steps=cfg["train_steps"],
        batch_size=cfg["batch_size"],
        lr=lr,
        hflip=True,
        max_shift=max(1, size // 16),
        max_train_t=t_start if train_up_to_t_start else None,
        seed=seed,
        n_samples=n_samples,
        random_state=seed,
        verbose=verbose,
    ).fit(data["train"])
    # CPU seconds of all threads: unlike wall time, not inflated by other jobs on a shared host.
    train_cpu_seconds = time.process_time() - cpu_start
    scores = score_methods(data, loc, seed, n_samples, erosion, methods)
    timing_batch = data["test"][: min(32, len(data["test"]))]
    maps_per_second, maps_per_cpu_second = time_maps(loc, timing_batch, n_samples)
    return {
        "scores": scores,
        "train_seconds": loc.train_seconds_,
        "train_cpu_seconds": train_cpu_seconds,
        "maps_per_second": maps_per_second,
        "maps_per_cpu_second": maps_per_cpu_second,
        "final_train_loss": float(np.mean(loc.loss_history_[-50:])),
        "reproducible": reproducibility(loc, data["test"][:4], seed),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command-line options of this script."""
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


def run(args: argparse.Namespace, command: str) -> int:
    """Run the benchmark, write JSON, print the table."""
    import torch

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
    out = write_result(args.out, result, command=command)
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


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    command = "python benchmarks/image_brain.py " + " ".join(shlex.quote(a) for a in argv)
    return run(args, command=command)


if __name__ == "__main__":
    sys.exit(main())
