"""The one builder of a run's ``report.json`` and ``arrays.npz`` (layout: :mod:`run_folder`).

``diffad localize``, ``diffad test`` and ``diffad demo`` all call :func:`build_report` with the
:class:`~diffad.image.result.LocalizationResult` of their images (and, for a region test, its
results), so every report shows the maps that were scored and tested.
"""

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


def build_report(
    kind: str,
    title: str,
    loc: Any,
    model_path: str,
    names: list[str],
    result: Any,
    *,
    alpha: float,
    q: float | None = None,
    region_results: list[Any] | None = None,
    exact: bool = True,
    check: tuple[Any, list] | None = None,
    noise_check: Any = None,
    synthetic_lesions: bool = False,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``report.json`` and ``arrays.npz`` contents of a run.

    Parameters
    ----------
    kind : {"localize", "test", "demo"}
        The command.
    title : str
        Heading of the report.
    loc : ImageLocalizer
        The model (its calibration scores give the conformal p-values).
    model_path : str
        Where the model was loaded from.
    names : list of str
        Image names.
    result : LocalizationResult
        Maps, scores, masks and flags of the images. Conformal p-values and flags are
        given only when it carries flags (a calibrated model, maps as calibrated).
    alpha : float
        Level of every decision in the report.
    q : float, optional
        Benjamini-Hochberg level across these images (None: no selection).
    region_results : list, optional
        One region-test result per image (a ``SelectiveTestResult`` or the error message).
    exact : bool
        Whether the region p-values are exact (False for termination ``"decision"``: only the
        bracket and the decision are written).
    check : (CalibrationCheck, list), optional
        The healthy calibration check and its p-values.
    noise_check : RegionMeanCheck, optional
        The region test's check of its noise model (shown with the calibration check).
    synthetic_lesions : bool
        Whether lesions were made by diffad (the demo).
    extra : dict, optional
        More top-level keys (e.g. the demo's settings).

    Returns
    -------
    report, arrays : dict, dict
    """
    entries = image_entries(loc, names, result, q)
    arrays = {
        "images": result.image,
        "reconstructions": result.reconstruction,
        "maps": result.anomaly_map,
    }
    if result.pred_mask is not None:
        arrays["masks"] = result.pred_mask
    if region_results is not None:
        add_region_results(entries, region_results, alpha, exact)
        shape = result.image.shape[1:]
        arrays["regions"] = np.stack(
            [
                np.zeros(shape[1:], bool) if isinstance(r, str) else r.region.reshape(shape).any(0)
                for r in region_results
            ]
        )
    calibration = None
    if check is not None:
        found, p_values = check
        calibration = {**found.to_dict(), "message": found.message(), "p_values": p_values}
        if noise_check is not None:
            calibration["noise_check"] = {**noise_check.to_dict(), "message": noise_check.message()}
    methods = sorted({e["p_method"] for e in entries if e.get("p_method")})
    report = {
        "kind": kind,
        "title": title,
        **run_context(kind),
        "model": model_summary(loc, model_path),
        "alpha": alpha,
        "q": q if result.calibrated else None,
        "synthetic_lesions": synthetic_lesions,
        "images": entries,
        "calibration": calibration,
        "region_test": ", ".join(methods) or None,
        # The check stops at its decisions, so its p-values are not exact: no QQ plot of them.
        "null_p_values": {},
        **(extra or {}),
    }
    return report, arrays


def image_entries(
    loc: Any, names: list[str], result: Any, q: float | None
) -> list[dict[str, Any]]:
    """Per-image report entries: score, flag, conformal p-value, BH selection, mask size.

    Parameters
    ----------
    loc : ImageLocalizer
        The model; its healthy calibration scores give the conformal p-values.
    names : list of str
        Image names.
    result : LocalizationResult
        Scores, masks and flags; without flags (an uncalibrated model, or maps changed after
        the model computed them) no p-value or flag is given.
    q : float or None
        Benjamini-Hochberg level across these images (None: no selection).

    Returns
    -------
    list of dict
        One entry per image, in the layout of :mod:`diffad.report.run_folder`.
    """
    from diffad.conformal.fdr import benjamini_hochberg
    from diffad.conformal.p_values import conformal_p_values

    scores, masks, labels = result.pred_score, result.pred_mask, result.pred_label
    calibrated = result.calibrated
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
                "flagged": bool(labels[i]) if calibrated else None,
                "p_conformal": float(p[i]) if calibrated else None,
                "bh_selected": bool(selected[i]) if selected is not None else None,
                "mask_pixels": int(masks[i].sum()) if masks is not None else None,
                "region_pixels": None,
                "p_selective": None,
                "p_selective_bounds": None,
                "p_naive": None,
                "p_method": None,
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
        # Only the exact test's search stops at a bracket; other p-values are always exact.
        point = exact or res.method not in ("parametric", "oc", "tile")
        entry.update(
            p_method=method_label(res.method, res.null),
            region_pixels=res.region_size,
            p_selective=float(res.p_value) if point and res.p_value is not None else None,
            p_selective_bounds=bounds,
            p_naive=res.naive_p_value,
            rejected=reject_at(bounds, alpha) if res.selected else False,
            test_message=res.message or None,
        )


def method_label(method: str, null: str) -> str:
    """How a region p-value was computed, for a reader: e.g. ``"fission, conformal null"``."""
    if method == "rank":
        return "most extreme flagged component, ranked among healthy images (conformal)"
    if method == "parametric":
        return "exact DAL-Test (selective)"
    if method == "tile":
        return "exact selective test of fixed tiles (Bonferroni over the grid)"
    if method == "oc":
        return "DAL-Test over-conditioned (selective)"
    if method in ("fission", "naive") and null:
        return f"{method}, {null} null"
    return method


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
