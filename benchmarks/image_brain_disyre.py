"""DISYRE v2 on the brain-MRI benchmark: the same split, post-processing and metrics as the
DDPM localiser (``image_brain.py`` beside this module, which imports it).

One restorer is trained on the MNI152 slices; the methods are its maps:

- ``disyre``: the v2 ensemble over 𝒯 = {99, 74, 49, 24} (one pass each);
- ``disyre-single``: the single severity step t = 49 of the same model (fixed before any
  result was seen; every single step's scores are kept under ``disyre_single_steps``);
- ``disyre-sampler``: the multi-step cold-diffusion sampler through 𝒯, same model.

The test lesions come from :func:`diffad.data.synthetic.lesion_dataset`, never from DAG, so the
comparison is not circular.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from diffad.diffusion.cold import DEFAULT_SEVERITIES
from diffad.image.disyre_localizer import DisyreLocalizer

DISYRE_METHODS = ("disyre", "disyre-single", "disyre-sampler")
SINGLE_STEP = 49

# Training budgets per preset (2 CPU cores): ``quick`` for 32×32 in a few minutes, ``full``
# the DisyreLocalizer defaults (widths 16-32-64-128, 2000 steps of 32 images).
DISYRE_PRESETS: dict[str, dict[str, Any]] = {
    "full": {"channels": [16, 32, 64, 128], "train_steps": 2000, "batch_size": 32},
    "quick": {"channels": [16, 32, 64], "train_steps": 1500, "batch_size": 32},
}


def _inference(method: str) -> dict[str, Any]:
    if method == "disyre":
        return {"severities": DEFAULT_SEVERITIES, "inference": "ensemble"}
    if method == "disyre-single":
        return {"severities": (SINGLE_STEP,), "inference": "ensemble"}
    return {"severities": DEFAULT_SEVERITIES, "inference": "sampler"}


def maps_per_second(loc: DisyreLocalizer, images: np.ndarray, repeats: int = 3) -> float:
    """Maps per wall-clock second, median of ``repeats`` (restorations included)."""
    wall = []
    for _ in range(repeats):
        start = time.perf_counter()
        loc.anomaly_map(images)
        wall.append(time.perf_counter() - start)
    return len(images) / statistics.median(wall)


def run_disyre(
    data: dict[str, np.ndarray],
    methods: list[str],
    score_maps: Callable[[Callable[[str], np.ndarray]], dict[str, float]],
    quick: bool,
    channels: list[int] | None = None,
    train_steps: int | None = None,
    batch_size: int | None = None,
    lr: float = 2e-3,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train one DISYRE restorer on ``data["train"]`` and score ``methods`` with it.

    Parameters
    ----------
    data : dict
        From ``image_brain.load_brain_split``.
    methods : list of str
        Subset of ``DISYRE_METHODS``.
    score_maps : callable
        ``score_maps(maps_of)`` → the metrics of the raw maps ``maps_of(split)``: the DDPM
        methods' scorer of ``image_brain.py``, passed in so that there is one.
    quick : bool
        Use the ``quick`` budget.
    channels, train_steps, batch_size, lr, seed, verbose :
        Override the preset; seed and progress bars.

    Returns
    -------
    dict
        ``scores`` per method (same keys as the DDPM methods), ``disyre_single_steps``,
        ``train_seconds``, ``train_cpu_seconds``, ``maps_per_second`` (ensemble),
        ``final_train_loss`` and ``settings``.
    """
    preset = dict(DISYRE_PRESETS["quick" if quick else "full"])
    cfg = {
        "channels": channels or preset["channels"],
        "train_steps": train_steps or preset["train_steps"],
        "batch_size": batch_size or preset["batch_size"],
    }
    cpu_start = time.process_time()
    loc = DisyreLocalizer(
        unet={"channels": cfg["channels"]},
        train_steps=cfg["train_steps"],
        batch_size=cfg["batch_size"],
        lr=lr,
        foreground_threshold=0.0,  # brain slices have an exact zero background
        random_state=seed,
        verbose=verbose,
    ).fit(data["train"])
    train_cpu_seconds = time.process_time() - cpu_start

    def scores_of(**inference: Any) -> dict[str, float]:
        loc.set_params(**inference)
        maps = {k: loc.anomaly_map(data[k]) for k in ("val", "test", "test_healthy")}
        return score_maps(lambda k: maps[k])

    scores = {m: scores_of(**_inference(m)) for m in methods}
    singles = {f"t={t}": scores_of(severities=(t,), inference="ensemble")
               for t in DEFAULT_SEVERITIES}  # fmt: skip
    loc.set_params(**_inference("disyre"))
    batch = data["test"][: min(32, len(data["test"]))]
    return {
        "scores": scores,
        "disyre_single_steps": singles,
        "train_seconds": loc.train_seconds_,
        "train_cpu_seconds": train_cpu_seconds,
        "maps_per_second": maps_per_second(loc, batch),
        "final_train_loss": float(np.mean(loc.loss_history_[-50:])),
        "settings": {
            **cfg,
            "lr": lr,
            "severities": list(DEFAULT_SEVERITIES),
            "single_step": SINGLE_STEP,
            "foreground_threshold": 0.0,
            "augment": True,
            "timing": f"median of 3 runs of anomaly_map (ensemble) on {len(batch)} images",
        },
    }
