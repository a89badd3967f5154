"""The per-image entries and context of a run's ``report.json`` (see :mod:`run_folder`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def model_summary(loc: Any, path: str) -> dict[str, Any]:
    """What the report says about the model saved at ``path`` (a JSON-ready dict)."""
    from diffad.image.preprocessing import describe

    method = {
        key: value
        for key in ("t_start", "ddim_steps", "severities", "inference")
        if (value := getattr(loc, key, None)) is not None
    }
    if "severities" in method:
        method["severities"] = list(method["severities"])
    return {
        "path": str(path),
        "class": type(loc).__name__,
        "image_shape": list(loc.image_shape_),
        "score": loc.score,
        "image_score": loc.image_score,
        "preprocessing": describe(loc.preprocessing_, loc.image_shape_),
        **method,
        "calibrated": hasattr(loc, "threshold_"),
        "threshold": getattr(loc, "threshold_", None),
    }


def image_entries(
    loc: Any,
    names: list[str],
    scores: np.ndarray,
    masks: np.ndarray | None,
    q: float | None,
    comparable: bool = True,
) -> list[dict[str, Any]]:
    """Per-image report entries: score, flag, conformal p-value, BH selection, mask size.

    Parameters
    ----------
    loc : ImageLocalizer
        The model; when calibrated, its healthy calibration scores give the conformal
        p-values and its threshold the flags.
    names : list of str
        Image names.
    scores : numpy.ndarray
        Image scores (N,).
    masks : numpy.ndarray or None
        Pixel masks (N, H, W).
    q : float or None
        Benjamini-Hochberg level across these images (None: no selection).
    comparable : bool
        Whether the scores were computed as the calibration scores were (same map, one
        reconstruction, no post-processing); if not, no p-value or flag is given.

    Returns
    -------
    list of dict
        One entry per image, in the layout of :mod:`diffad.report.run_folder`.
    """
    from diffad.conformal.fdr import benjamini_hochberg
    from diffad.conformal.p_values import conformal_p_values

    calibrated = hasattr(loc, "threshold_") and comparable
    p = conformal_p_values(loc.calibration_scores_, scores) if calibrated else None
    selected = benjamini_hochberg(p, q) if calibrated and q is not None else None
    entries = []
    for i, name in enumerate(names):
        entries.append(
            {
                "id": i,
                "name": name,
                "has_lesion": None,
                "image_score": float(scores[i]),
                "flagged": bool(scores[i] > loc.threshold_) if calibrated else None,
                "p_conformal": float(p[i]) if calibrated else None,
                "bh_selected": bool(selected[i]) if selected is not None else None,
                "mask_pixels": int(masks[i].sum()) if masks is not None else None,
                "region_pixels": None,
                "p_selective": None,
                "p_selective_bounds": None,
                "p_naive": None,
                "rejected": None,
                "test_message": None,
            }
        )
    return entries


def add_region_results(
    entries: list[dict[str, Any]], results: list[Any], alpha: float, exact: bool = True
) -> None:
    """Write each image's region test into its entry (``results[i]`` is a
    :class:`~diffad.selective.result.SelectiveTestResult`, or a str: the error it raised).

    With ``exact=False`` (termination ``"decision"``) only the bracket and the decision are
    written: the point estimate is not a p-value.
    """
    from diffad.selective.result import reject_at

    for entry, res in zip(entries, results, strict=True):
        if isinstance(res, str):
            entry.update(test_message=res, rejected=None)
            continue
        bounds = None if res.p_value_bounds is None else [float(b) for b in res.p_value_bounds]
        if bounds is None and res.p_value is not None:
            bounds = [float(res.p_value)] * 2  # an exact p is its own bracket in the report
        entry.update(
            region_pixels=res.region_size,
            p_selective=float(res.p_value) if exact and res.p_value is not None else None,
            p_selective_bounds=bounds,
            p_naive=res.naive_p_value,
            rejected=reject_at(bounds, alpha) if res.selected else False,
            test_message=res.message or None,
        )


def run_context(kind: str) -> dict:
    """The command line, machine and time of this run, for its report."""
    import datetime
    import sys

    from diffad.provenance import machine_info

    program = Path(sys.argv[0]).name
    command = "diffad " + " ".join(sys.argv[1:]) if program in ("diffad", "__main__.py") else kind
    return {
        "command": command,
        "machine": machine_info(),
        "created_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def finish_report(out: Path, overlays: bool = False) -> Path:
    """Render ``out/report.html`` (and the per-image overlay PNGs when asked); its path."""
    from diffad.report.render import render_report

    if overlays:
        from diffad.report.overlays import write_overlays

        write_overlays(out)
    return render_report(out)
