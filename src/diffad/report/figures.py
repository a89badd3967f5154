"""The pictures of ``diffad report``, as PNG data URIs that embed in a self-contained page.

Every function draws with matplotlib's Agg backend (imported here lazily, so that the
command line starts fast), closes its figure and returns ``data:image/png;base64,...``.
Figures are small on purpose (a row of four image panels is about 630 × 170 pixels and
20–40 kB), so that a report of a few hundred images stays a few megabytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Outline colours of :func:`image_panel`; the page's legend uses the same ones.
OUTLINE_COLOURS = {"masks": "#00e5ff", "regions": "#ffd400", "truth": "#ff3df2"}
#: Figure resolution: 90 dpi keeps a 7-inch row of panels about 630 pixels wide.
DPI = 90


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _data_uri(fig: Any) -> str:
    """Encode ``fig`` as a 256-colour PNG data URI and close it.

    The palette (median cut) halves the size of a row of noisy images against a full-colour
    PNG, with no difference visible at this size.
    """
    from PIL import Image  # a dependency of matplotlib

    plt = _pyplot()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    out = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _displayable(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image in model layout (C, H, W) or (H, W) → what ``imshow`` takes, and its colour map.

    Three channels are shown as RGB; any other channel count as the grey mean of the channels.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.clip(a.transpose(1, 2, 0), 0.0, 1.0), None
    if a.ndim == 3:
        a = a.mean(axis=0)
    if a.ndim != 2:
        raise ValueError(f"an image must be (C, H, W) or (H, W), got shape {a.shape}")
    return a, "gray"


def _outline(ax: Any, mask: np.ndarray | None, colour: str, style: str) -> None:
    """Draw the boundary of a boolean mask; nothing when it is absent, empty or full."""
    if mask is None:
        return
    m = np.asarray(mask, dtype=bool)
    # A constant mask has no boundary (and contour would warn about it).
    if m.all() or not m.any():
        return
    ax.contour(m.astype(float), levels=[0.5], colors=colour, linewidths=1.0, linestyles=style)


def image_panel(
    image: np.ndarray,
    reconstruction: np.ndarray,
    amap: np.ndarray,
    mask: np.ndarray | None,
    region: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    vmax: float = 1.0,
    title: str | None = None,
) -> str:
    """One row of four panels: input, reconstruction, anomaly map, outlines.

    Parameters
    ----------
    image, reconstruction : numpy.ndarray
        (C, H, W) or (H, W) in model scale [0, 1]; three channels are shown as RGB.
    amap : numpy.ndarray
        Anomaly map (H, W), drawn on the scale [0, ``vmax``] with a colour bar.
    mask : numpy.ndarray or None
        Pixels above the healthy 99th percentile (H, W), outlined on the input.
    region : numpy.ndarray, optional
        The region the selective test tested, outlined in another colour.
    truth : numpy.ndarray, optional
        Synthetic-lesion mask, outlined dashed.
    vmax : float
        Top of the map's colour scale; the caller passes one value for every image of a
        report so that the maps compare by colour.
    title : str, optional
        Small title above the row.

    Returns
    -------
    str
        ``data:image/png;base64,...``
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(7.0, 1.9), layout="constrained")
    shown, cmap = _displayable(image)
    axes[0].imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("input", fontsize=8)
    rec, rec_cmap = _displayable(reconstruction)
    axes[1].imshow(rec, cmap=rec_cmap, vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("reconstruction", fontsize=8)
    heat = axes[2].imshow(
        np.asarray(amap, dtype=np.float64),
        cmap="inferno",
        vmin=0,
        vmax=vmax,
        interpolation="nearest",
    )
    axes[2].set_title("anomaly map", fontsize=8)
    bar = fig.colorbar(heat, ax=axes[2], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=6)
    axes[3].imshow(shown, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    _outline(axes[3], mask, OUTLINE_COLOURS["masks"], "solid")
    _outline(axes[3], region, OUTLINE_COLOURS["regions"], "solid")
    _outline(axes[3], truth, OUTLINE_COLOURS["truth"], "dashed")
    axes[3].set_title("outlines", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    return _data_uri(fig)


def qq_plot(p_values_by_name: dict[str, Sequence[float | None]]) -> str:
    """Uniform QQ plot of p-values, one series per name, with pointwise 95 % bands.

    Under a valid test, p-values of healthy images are uniform (or larger): the points lie
    on or above the diagonal. Points below the band mean too many small p-values.

    Parameters
    ----------
    p_values_by_name : dict of str to list of float
        Series of p-values in [0, 1]; None entries (images without a tested region) and
        empty series are left out.

    Returns
    -------
    str
        ``data:image/png;base64,...``
    """
    from scipy.stats import beta

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 4.2), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.4", linewidth=0.8, linestyle="--", label="uniform")
    for k, (name, values) in enumerate(p_values_by_name.items()):
        p = np.sort([float(v) for v in values if v is not None])
        n = len(p)
        if n == 0:
            continue
        colour = f"C{k}"
        i = np.arange(1, n + 1)
        expected = i / (n + 1)
        # The i-th smallest of n uniform p-values is Beta(i, n - i + 1).
        lo, hi = beta.ppf(0.025, i, n - i + 1), beta.ppf(0.975, i, n - i + 1)
        ax.fill_between(expected, lo, hi, color=colour, alpha=0.15, linewidth=0)
        ax.plot(expected, p, "o", markersize=3, color=colour, label=f"{name} (n={n})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("expected p (uniform)", fontsize=9)
    ax.set_ylabel("observed p", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left")
    return _data_uri(fig)


def score_histogram(scores: Sequence[float], groups: Sequence[str], threshold: float | None) -> str:
    """Histogram of image scores by group, with the image threshold as a vertical line.

    Parameters
    ----------
    scores : sequence of float
        One image score per image.
    groups : sequence of str
        The group of each image (e.g. "healthy", "synthetic lesion", "unknown").
    threshold : float or None
        Score above which an image is flagged; no line when None.

    Returns
    -------
    str
        ``data:image/png;base64,...``
    """
    if len(scores) != len(groups):
        raise ValueError(f"{len(scores)} scores but {len(groups)} groups")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    values = np.asarray(scores, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    names = list(dict.fromkeys(groups))
    chosen = [values[[g == name for g in groups]] for name in names]
    # Stacked on one set of bins: each bar's height is the count of all groups together.
    bins = np.histogram_bin_edges(values, bins=min(30, max(5, len(values) // 3)))
    ax.hist(
        chosen,
        bins=bins,
        stacked=True,
        alpha=0.8,
        label=[f"{name} (n={len(c)})" for name, c in zip(names, chosen, strict=True)],
    )
    if threshold is not None:
        ax.axvline(threshold, color="black", linewidth=1.0, linestyle="--", label="threshold")
    ax.set_xlabel("image score", fontsize=9)
    ax.set_ylabel("images", fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8)
    return _data_uri(fig)
