"""Render a run folder (see :mod:`diffad.report.run_folder`) as one self-contained HTML page.

The page embeds every picture as a PNG data URI and its CSS in a ``<style>`` block: it can
be mailed or archived as a single file and needs no JavaScript. Numbers are formatted here;
the markup lives in ``templates/report.html.j2``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from diffad.report import figures
from diffad.report.run_folder import load_run

TEMPLATE = "report.html.j2"
#: Percentile of all map pixels of a run used as the top of the common colour scale: high
#: enough that most anomalies are not clipped, low enough that one outlier does not wash
#: out every other map.
VMAX_PERCENTILE = 99.5
TINY_P, TINY_TEXT = 1e-4, "<1e-4"
MISSING = "—"
MODEL_FIELDS = ("path", "image_shape", "score", "image_score", "preprocessing")
NUMBER_FIELDS = (
    "image_score",
    "p_conformal",
    "mask_pixels",
    "region_pixels",
    "p_selective",
    "p_naive",
)
FLAG_FIELDS = ("has_lesion", "flagged", "bh_selected", "rejected")
#: Legend of the outlines on the fourth panel, keyed by the array that holds them.
OUTLINE_LABELS = {
    "masks": "mask (above the healthy 99th percentile)",
    "regions": "tested region",
    "truth": "synthetic lesion (truth, dashed)",
}


def format_p(p: float | None) -> str:
    """A p-value with 3 significant digits, ``"<1e-4"`` below 1e-4 and ``"—"`` when absent."""
    if p is None:
        return MISSING
    return TINY_TEXT if p < TINY_P else f"{p:.3g}"


def format_number(x: float | None) -> str:
    """A score with 4 significant digits, ``"—"`` when absent."""
    return MISSING if x is None else f"{x:.4g}"


def format_fraction(x: float | None) -> str:
    """A rate in [0, 1] with 3 decimals, as in the calibration check's message; ``"—"``."""
    return MISSING if x is None else f"{x:.3f}"


def format_count(n: float | None) -> str:
    """A pixel count, ``"—"`` when absent."""
    return MISSING if n is None else str(int(n))


def format_flag(b: bool | None) -> str:
    """``"yes"``, ``"no"`` or ``"—"``."""
    return MISSING if b is None else ("yes" if b else "no")


def decision(entry: dict[str, Any], alpha: float | None, report_alpha: float | None) -> str:
    """The region test's decision for one image at level ``alpha``.

    Returns ``"no region"`` when nothing was selected, ``"reject"`` or ``"no evidence"``
    when the p-value (or its bracket, or the run's own certain decision at its level)
    settles it, and ``"—"`` otherwise (no test, or a bracket that straddles ``alpha``).
    """
    if entry.get("region_pixels") == 0:
        return "no region"
    # At the run's own level its recorded decision is authoritative: with a decision-only
    # search there may be a certain decision but no p-value.
    if alpha == report_alpha and entry.get("rejected") is not None:
        return "reject" if entry["rejected"] else "no evidence"
    if alpha is None:
        return MISSING
    from diffad.selective.result import reject_at

    # The bracket decides: an undecided one stays "—".
    verdict = reject_at(entry.get("p_selective_bounds"), alpha, entry.get("p_selective"))
    return MISSING if verdict is None else ("reject" if verdict else "no evidence")


def common_vmax(maps: np.ndarray) -> float:
    """Top of the colour scale shared by every anomaly map of a report.

    The ``VMAX_PERCENTILE`` of all finite map pixels; 1 when there are none or all are 0.
    """
    finite = np.asarray(maps, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 1.0
    top = float(np.percentile(finite, VMAX_PERCENTILE))
    return top if top > 0 else 1.0


def _number(value: Any, what: str) -> float | None:
    """``value`` if it is a JSON number or null; a user error naming ``what`` otherwise."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise ValueError(f"report.json: {what} is not a number: {value!r}")


def _object(report: dict[str, Any], key: str) -> dict[str, Any]:
    """The JSON object ``report[key]`` ({} when absent or null)."""
    value = report.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"report.json: {key} is not an object: {value!r}")
    return value


def _checked_entry(entry: Any) -> dict[str, Any]:
    """One ``images`` entry with its numbers and flags checked (a user error otherwise)."""
    if not isinstance(entry, dict):
        raise ValueError(f"an images entry of report.json is not an object: {entry!r}")
    name = entry.get("name", entry.get("id"))
    for key in NUMBER_FIELDS:
        _number(entry.get(key), f"{key} of image {name!r}")
    for key in FLAG_FIELDS:
        if entry.get(key) not in (None, True, False):
            raise ValueError(f"report.json: {key} of image {name!r} is not true/false/null")
    bounds = entry.get("p_selective_bounds")
    if bounds is not None and not (isinstance(bounds, list) and len(bounds) == 2):
        raise ValueError(f"report.json: p_selective_bounds of image {name!r} is not [lo, hi]")
    for b in bounds or []:
        _number(b, f"p_selective_bounds of image {name!r}")
    return entry


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Every stored array has one entry per map and the maps' height and width."""
    maps = arrays["maps"]
    if maps.ndim != 3:
        raise ValueError(f"arrays.npz: maps must be (N, H, W), got shape {maps.shape}")
    for key in ("images", "reconstructions", "masks", "regions", "truth"):
        if key in arrays and (
            len(arrays[key]) != len(maps) or arrays[key].shape[-2:] != maps.shape[1:]
        ):
            raise ValueError(f"arrays.npz: {key} has shape {arrays[key].shape}, maps {maps.shape}")


def _group(has_lesion: bool | None, synthetic: bool) -> str:
    """Histogram group of an image."""
    if has_lesion is None:
        return "unknown"
    if has_lesion:
        return "synthetic lesion" if synthetic else "lesion"
    return "healthy"


def _counts(entries: list[dict[str, Any]], rows: list[dict[str, Any]], alpha: str) -> list[str]:
    """One-line tallies of the run; a tally the run has no data for is left out."""
    counts = [f"{len(entries)} images"]
    if any(e.get("flagged") is not None for e in entries):
        counts.append(f"{sum(e.get('flagged') is True for e in entries)} flagged")
    if any(e.get("bh_selected") is not None for e in entries):
        selected = sum(e.get("bh_selected") is True for e in entries)
        counts.append(f"{selected} selected by Benjamini–Hochberg")
    if any(r["decision"] != MISSING for r in rows):
        rejected = sum(r["decision"] == "reject" for r in rows)
        counts.append(f"{rejected} regions rejected at α = {alpha}")
    return counts


def _model_summary(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs describing the model, the named fields first (none without one)."""
    if not model:
        return []
    rows = []
    if model.get("path") is not None:
        rows.append(("model", str(model["path"])))
    shape = model.get("image_shape")
    if shape is not None:
        rows.append(
            ("image shape", " × ".join(map(str, shape)) if isinstance(shape, list) else str(shape))
        )
    for key, label in (("score", "map score"), ("image_score", "image score")):
        if model.get(key) is not None:
            rows.append((label, str(model[key])))
    pre = model.get("preprocessing")
    if isinstance(pre, dict):
        rows.append(("preprocessing", ", ".join(f"{k}={v}" for k, v in pre.items())))
    else:
        rows.append(("preprocessing", "none (images used as given)" if pre is None else str(pre)))
    for key, v in model.items():
        if key in MODEL_FIELDS:
            continue
        text = format_number(v) if isinstance(v, float) else v if isinstance(v, str) else None
        rows.append((key.replace("_", " "), json.dumps(v) if text is None else text))
    return rows


def _calibration(cal: dict[str, Any]) -> dict[str, Any] | None:
    """The healthy calibration check, formatted (None when the run has none)."""
    if not cal:
        return None
    band = cal.get("band") or [None, None]
    if not (isinstance(band, list) and len(band) == 2):
        raise ValueError(f"report.json: calibration band is not [lo, hi]: {band!r}")

    def number(key: str) -> float | None:
        return _number(cal.get(key), f"calibration {key}")

    noise = cal.get("noise_check")
    return {
        "adequate": cal.get("adequate") is not False,
        "message": cal.get("message"),
        "noise_message": noise.get("message") if isinstance(noise, dict) else None,
        "noise_fits": noise.get("fits") is not False if isinstance(noise, dict) else True,
        "alpha": format_number(number("alpha")),
        "rate": format_fraction(number("healthy_rejection_rate")),
        "band": "[{}, {}]".format(*(format_fraction(_number(b, "calibration band")) for b in band)),
        "n_images": format_count(number("n_images")),
        "n_healthy": format_count(number("n_healthy")),
        "n_rejected": format_count(number("n_rejected")),
    }


def _p_values(values: Any, what: str) -> list[float]:
    """The numbers of a JSON list of p-values, None entries (no region tested) left out."""
    if not isinstance(values, list):
        raise ValueError(f"report.json: {what} is not a list")
    return [float(v) for v in values if _number(v, what) is not None]


def _qq_series(report: dict[str, Any]) -> dict[str, list[float]]:
    """The non-empty p-value series of known-healthy images, by name."""
    series = {
        str(name): _p_values(values or [], f"null_p_values[{name!r}]")
        for name, values in _object(report, "null_p_values").items()
    }
    cal = _object(report, "calibration")
    check = _p_values(cal.get("p_values") or [], "calibration p_values")
    # A run may list the check's p-values among its null p-values too: plot them once.
    if sorted(check) not in [sorted(v) for v in series.values()]:
        series["healthy calibration check"] = check
    return {k: v for k, v in series.items() if v}


def _image_row(
    entry: dict[str, Any],
    arrays: dict[str, np.ndarray],
    alpha: float | None,
    report_alpha: float | None,
    vmax: float,
) -> dict[str, Any]:
    """Formatted numbers and the panel picture of one image."""
    i = int(entry["id"])
    name = str(entry.get("name") or f"image {i}")
    bounds = entry.get("p_selective_bounds")
    return {
        "id": i,
        "name": name,
        "has_lesion": format_flag(entry.get("has_lesion")),
        "image_score": format_number(entry.get("image_score")),
        "flagged": format_flag(entry.get("flagged")),
        "p_conformal": format_p(entry.get("p_conformal")),
        "bh_selected": format_flag(entry.get("bh_selected")),
        "mask_pixels": format_count(entry.get("mask_pixels")),
        "region_pixels": format_count(entry.get("region_pixels")),
        "p_selective": format_p(entry.get("p_selective")),
        "p_bounds": None if not bounds else f"[{format_p(bounds[0])}, {format_p(bounds[1])}]",
        "p_naive": format_p(entry.get("p_naive")),
        "p_method": entry.get("p_method") or MISSING,
        "decision": decision(entry, alpha, report_alpha),
        "test_message": entry.get("test_message"),
        "figure": image_figure(arrays, i, vmax),
    }


def image_figure(
    arrays: dict[str, np.ndarray], i: int, vmax: float, title: str | None = None
) -> str:
    """The panel of image ``i`` of a run's arrays (PNG data URI; see
    :func:`diffad.report.figures.image_panel`), its map on the scale 0 to ``vmax``."""

    def row(name: str) -> np.ndarray | None:
        return arrays[name][i] if name in arrays else None

    return figures.image_panel(
        arrays["images"][i],
        arrays["reconstructions"][i],
        arrays["maps"][i],
        row("masks"),
        region=row("regions"),
        truth=row("truth"),
        vmax=vmax,
        title=title,
    )


def _environment() -> Environment:
    """The Jinja2 environment of the report templates."""
    return Environment(
        loader=PackageLoader("diffad", "report/templates"),
        # select_autoescape matches the end of the name: "report.html.j2" needs "html.j2".
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _context(
    report: dict[str, Any], arrays: dict[str, np.ndarray], alpha: float | None
) -> dict[str, Any]:
    """Everything the template shows, formatted; the pictures drawn."""
    report_alpha = _number(report.get("alpha"), "alpha")
    level = report_alpha if alpha is None else alpha
    _check_arrays(arrays)
    entries = [_checked_entry(e) for e in report["images"]]
    synthetic = bool(report.get("synthetic_lesions"))
    model = _object(report, "model")
    vmax = common_vmax(arrays["maps"])
    rows = [_image_row(e, arrays, level, report_alpha, vmax) for e in entries]
    scored = [e for e in entries if e.get("image_score") is not None]
    qq = _qq_series(report)
    machine = _object(report, "machine")
    return {
        "title": report.get("title") or "diffad report",
        "kind": report.get("kind"),
        "command": report.get("command"),
        "created": report.get("created_utc"),
        "cpu": machine.get("cpu"),
        "cores": machine.get("cores"),
        "model": _model_summary(model),
        "alpha": format_number(level),
        "alpha_overridden": alpha is not None and alpha != report_alpha,
        "report_alpha": format_number(report_alpha),
        "q": format_number(_number(report.get("q"), "q")),
        "synthetic": synthetic,
        "calibration": _calibration(_object(report, "calibration")),
        "region_test": report.get("region_test"),
        "show_lesion": any(e.get("has_lesion") is not None for e in entries),
        "rows": rows,
        "counts": _counts(entries, rows, format_number(level)),
        "show_naive_note": any(e.get("p_naive") is not None for e in entries),
        "vmax": format_number(vmax),
        "outlines": [
            {"kind": kind, "colour": figures.OUTLINE_COLOURS[kind], "label": label}
            for kind, label in OUTLINE_LABELS.items()
            if kind in arrays
        ],
        "qq": figures.qq_plot(qq) if qq else None,
        "qq_names": list(qq),
        "histogram": figures.score_histogram(
            [e["image_score"] for e in scored],
            [_group(e.get("has_lesion"), synthetic) for e in scored],
            _number(model.get("threshold"), "model threshold"),
        )
        if scored
        else None,
    }


def render_report(
    folder: str | os.PathLike, out: str | os.PathLike | None = None, alpha: float | None = None
) -> Path:
    """Render the run in ``folder`` as a self-contained HTML page.

    Parameters
    ----------
    folder : path-like
        A run folder (``report.json`` + ``arrays.npz``) written by ``diffad localize``,
        ``test`` or ``demo``.
    out : path-like, optional
        The HTML file to write; default ``folder/report.html``.
    alpha : float, optional
        Level of the decisions shown; default the run's ``alpha``.

    Returns
    -------
    pathlib.Path
        The HTML file written.

    Raises
    ------
    FileNotFoundError
        The folder or one of its files is missing.
    ValueError
        Not a run folder, inconsistent arrays, malformed entries, or ``alpha`` outside (0, 1).
    """
    report, arrays = load_run(folder)
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    html = _environment().get_template(TEMPLATE).render(**_context(report, arrays, alpha))
    path = Path(out) if out is not None else Path(folder) / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
