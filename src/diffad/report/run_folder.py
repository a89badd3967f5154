"""The output folder of ``diffad localize``, ``diffad test`` and ``diffad demo``.

Every image command writes the same two files, which ``diffad report`` renders:

``report.json``
    What was found, one entry per image, plus the run's context::

        {
          "kind": "localize" | "test" | "demo",
          "title": str,
          "command": str, "machine": {...}, "created_utc": str,
          "model": {"path", "image_shape", "score", "image_score", "preprocessing", ...},
          "alpha": float,                  # level of every decision in the report
          "q": float | null,               # Benjamini-Hochberg level (when p_conformal exist)
          "synthetic_lesions": bool,       # the lesions were made by diffad (demo)
          "images": [{
              "id": int,                   # row in arrays.npz
              "name": str,
              "has_lesion": bool | null,   # ground truth, when known (synthetic lesions)
              "image_score": float,        # the model's image score (higher = more anomalous)
              "flagged": bool | null,      # image_score > the healthy 95th percentile
              "p_conformal": float | null, # conformal p-value of the image score
              "bh_selected": bool | null,  # selected by Benjamini-Hochberg at q
              "mask_pixels": int | null,   # pixels above the healthy 99th percentile
              "region_pixels": int | null, # pixels of the region the selective test tested
              "p_selective": float | null, # p-value of that region, by the region test
              "p_method": str | null,      # which test, e.g. "fission, conformal null"
              "p_selective_bounds": [lo, hi] | null,
              "p_naive": float | null,     # 2 Phi(-|z|): ignores the selection (invalid)
              "rejected": bool | null,     # p_selective < alpha (or the certain decision)
              "test_message": str | null
          }],
          "calibration": null | {          # healthy calibration check of the region test
              "alpha", "n_healthy", "n_images", "n_rejected", "healthy_rejection_rate",
              "band": [lo, hi], "adequate": bool, "message": str, "p_values": [...],
              "noise_check": {"radii", "variance", "band", "fits", "message"}  # Σ on region means
          },
          "region_test": str | null,       # the region test(s) behind p_selective
          "null_p_values": {name: [...]}   # p-values of known-healthy images (QQ plots)
        }

``arrays.npz``
    Compressed arrays indexed by ``id``: ``images`` and ``reconstructions`` (N, C, H, W)
    float32 in model scale, ``maps`` (N, H, W) float32, ``masks`` (N, H, W) bool (pixels
    above the healthy 99th percentile), and when present ``regions`` (N, H, W) bool (the
    tested region) and ``truth`` (N, H, W) bool (synthetic lesion masks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

REPORT_JSON = "report.json"
ARRAYS_NPZ = "arrays.npz"
REQUIRED_ARRAYS = ("images", "reconstructions", "maps")


def save_run(out: str | os.PathLike, report: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``report.json`` and ``arrays.npz`` into the folder ``out`` (created if needed).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"run arrays lack {missing}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, allow_nan=False))
    np.savez_compressed(out / ARRAYS_NPZ, **{k: np.asarray(v) for k, v in arrays.items()})
    return out


def load_run(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a run folder written by :func:`save_run`.

    Raises
    ------
    FileNotFoundError
        The folder or one of its two files is missing.
    ValueError
        The files are not a diffad run (unreadable JSON, missing arrays, ids out of range).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    for name in (REPORT_JSON, ARRAYS_NPZ):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder} has no {name}: give a folder written by diffad localize, test or demo"
            )
    try:
        report = json.loads((folder / REPORT_JSON).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder / REPORT_JSON} is not valid JSON: {err}") from err
    try:
        with np.load(folder / ARRAYS_NPZ, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {folder / ARRAYS_NPZ}: {err}") from err
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing or not isinstance(report, dict) or not isinstance(report.get("images"), list):
        raise ValueError(f"{folder} is not a diffad run folder (missing {missing or 'images'})")
    n = len(arrays["maps"])
    bad = [e.get("id") for e in report["images"] if not 0 <= int(e.get("id", -1)) < n]
    if bad:
        raise ValueError(f"{folder}: image ids {bad[:5]} are outside the {n} stored maps")
    return report, arrays
