"""Shared parts of the one-class image benchmarks (Fashion-MNIST, ELPV).

``--method ddpm``: train a DDPMLocalizer on normal images, reconstruct held-out normal and
anomalous images once per noise level, score every map kind on the same reconstructions.
``--method disyre``: train a DisyreLocalizer and score its map with the severity ensemble
(``ensemble``) and with the single step t = 49 (``single-t49``). Every map is reduced to an
image score (mean / max / top-k); the image-level ROC-AUC and AP of every combination go to
the results. A training-free baseline — the absolute difference to the mean training image —
is scored with the same reductions.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import time

import numpy as np
import torch
from scipy import ndimage

from diffad.diffusion.cold import DEFAULT_SEVERITIES
from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.image.disyre_localizer import DisyreLocalizer
from diffad.image.scores import SCORES, anomaly_score
from diffad.metrics.localization import image_ap, image_auroc, reduce_maps
from diffad.provenance import machine_info, write_json

REDUCTIONS = {"mean": {}, "max": {}, "top2%": {"k": 0.02}}
#: The DISYRE variants scored from one trained restorer: name → severity steps.
DISYRE_VARIANTS = {"ensemble": DEFAULT_SEVERITIES, "single-t49": (49,)}


def object_masks(images: np.ndarray, threshold: float, dilate: int = 1) -> np.ndarray:
    """(N, H, W) foreground of each test image itself: pixels above ``threshold``, dilated.

    Uses only the image being scored (no labels), like a brain mask; an image with no
    pixel above the threshold keeps all its pixels.
    """
    fg = images[:, 0] > threshold
    fg = np.stack([ndimage.binary_dilation(m, iterations=dilate) if m.any() else m for m in fg])
    fg[~fg.reshape(len(fg), -1).any(axis=1)] = True
    return fg


def _reduction_table(
    maps: np.ndarray, labels: np.ndarray, masks: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    out = {}
    for use_mask in (False, True) if masks is not None else (False,):
        for name, kw in REDUCTIONS.items():
            how = "topk" if name.startswith("top") else name
            scores = reduce_maps(maps, how, masks=masks if use_mask else None, **kw)
            out[name + ("-fg" if use_mask else "")] = {
                "roc_auc": round(image_auroc(labels, scores), 4),
                "ap": round(image_ap(labels, scores), 4),
            }
    return out


def train_and_evaluate(
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    model_params: dict,
    t_starts: list[int],
    seed: int = 0,
    verbose: bool = False,
    foreground_threshold: float | None = None,
    method: str = "ddpm",
) -> dict:
    """Fit on ``x_train``, then image-level ROC-AUC/AP per variant, score and reduction.

    Returns a dict with ``train_seconds``, ``final_loss`` (mean of the last 50 updates),
    ``train_cpu_seconds``, ``maps_per_second`` and ``maps_per_cpu_second`` (median of 3
    timed ``anomaly_map`` calls: SSIM-ens for the DDPM, the ensemble for DISYRE),
    ``results[variant][score][reduction] = {"roc_auc", "ap"}`` (variant: the noise level
    ``t_start`` for the DDPM, a ``DISYRE_VARIANTS`` name for DISYRE) and ``baseline``. With
    ``foreground_threshold``, every reduction is also computed inside the test image's own
    object mask (:func:`object_masks`), under the name ``REDUCTION-fg``.
    """
    masks = None if foreground_threshold is None else object_masks(x_test, foreground_threshold)
    cpu0 = time.process_time()
    cls = DisyreLocalizer if method == "disyre" else DDPMLocalizer
    model = cls(random_state=seed, verbose=verbose, **model_params).fit(x_train)
    train_cpu = time.process_time() - cpu0
    out = {
        "method": method,
        "n_train": int(len(x_train)),
        "n_test_normal": int((y_test == 0).sum()),
        "n_test_anomalous": int((y_test == 1).sum()),
        "train_seconds": round(model.train_seconds_, 2),
        # CPU seconds of this process: the wall time depends on the other jobs on the machine
        "train_cpu_seconds": round(train_cpu, 2),
        "final_loss": round(float(np.mean(model.loss_history_[-50:])), 5),
        "results": {},
    }
    if method == "disyre":
        for name, severities in DISYRE_VARIANTS.items():
            model.set_params(severities=severities)
            table = _reduction_table(model.anomaly_map(x_test), y_test, masks)
            out["results"][name] = {"disyre": table}
            print(f"  {name}: max {table['max']['roc_auc']:.3f}", file=sys.stderr, flush=True)
        model.set_params(severities=DEFAULT_SEVERITIES)
    for t_start in t_starts if method == "ddpm" else []:
        # The noise level and the reconstruction seed are parameters of the localiser: a
        # copy per level leaves the fitted model at its own settings for the timing below.
        at_level = copy.deepcopy(model).set_params(t_start=t_start, seed=seed)
        t0 = time.perf_counter()
        rec = at_level.reconstruct(x_test)
        rec_seconds = time.perf_counter() - t0
        per_score = {}
        for score in SCORES:
            per_score[score] = _reduction_table(anomaly_score(x_test, rec, score), y_test, masks)
        out["results"][str(t_start)] = per_score
        out.setdefault("reconstruction_seconds", {})[str(t_start)] = round(rec_seconds, 2)
        print(f"  t_start={t_start}: " + ", ".join(
            f"{s} max {per_score[s]['max']['roc_auc']:.3f}" for s in SCORES
        ), file=sys.stderr, flush=True)  # fmt: skip
    mean_image = x_train.mean(axis=0, keepdims=True)
    out["baseline"] = _reduction_table(np.abs(x_test - mean_image)[:, 0], y_test, masks)
    probe = x_test[: min(64, len(x_test))]
    if method == "ddpm":
        model.set_params(score="ssim-ens", seed=seed)
    wall, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        model.anomaly_map(probe)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out["maps_per_second"] = round(len(probe) / statistics.median(wall), 2)
    out["maps_per_cpu_second"] = round(len(probe) / statistics.median(cpu), 2)
    return out


def summarise(per_group: dict[str, dict]) -> dict:
    """Mean ROC-AUC over groups (classes) per variant / score / reduction, and the baseline."""
    groups = list(per_group.values())
    summary: dict = {}
    for variant, scores in groups[0]["results"].items():
        summary[variant] = {
            s: {
                r: round(
                    float(np.mean([g["results"][variant][s][r]["roc_auc"] for g in groups])), 4
                )
                for r in groups[0]["baseline"]
            }
            for s in scores
        }
    summary["baseline"] = {
        r: round(float(np.mean([g["baseline"][r]["roc_auc"] for g in groups])), 4)
        for r in groups[0]["baseline"]
    }
    return summary


def set_threads(threads: int) -> None:
    """Limit torch's intra-op threads (the benchmark machines share 2 cores)."""
    if threads > 0:
        torch.set_num_threads(threads)


def add_model_args(p: argparse.ArgumentParser, train_steps: int) -> None:
    """The model and run options both benchmarks share."""
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", default="16,32,64,128", help="U-Net widths")
    p.add_argument("--train-steps", type=int, default=train_steps)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--t-starts", default="250,500", help="noise levels to reconstruct from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--method",
        choices=("ddpm", "disyre"),
        default="ddpm",
        help="localiser (disyre ignores --t-starts: it scores its ensemble and t = 49)",
    )
    p.add_argument("--quick", action="store_true", help="tiny run to check the pipeline")


def model_params(args: argparse.Namespace) -> dict:
    """DDPMLocalizer keyword arguments from the parsed options."""
    return {
        "unet": {"channels": [int(c) for c in args.channels.split(",")]},
        "train_steps": args.train_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": "auto",
    }


def write_results(args: argparse.Namespace, title: str, start: float, payload: dict) -> None:
    """Write the JSON with the command line, machine, settings and wall time."""
    result = {
        "benchmark": title,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": {**machine_info(), "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "settings": {**vars(args), "model_params": model_params(args)},
        "total_seconds": round(time.perf_counter() - start, 1),
        **payload,
    }
    write_json(args.out, result, indent=1)
