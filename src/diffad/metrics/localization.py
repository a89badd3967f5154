"""Pixel- and image-level metrics for anomaly maps (higher score = more anomalous).

Pixel metrics pool every pixel of every image (restricted to a foreground mask when one is
given), as in the brain-MRI anomaly-segmentation literature. A pixel is predicted anomalous
when its score is strictly above the threshold: ``score > threshold``.

- :func:`pixel_auroc`, :func:`pixel_ap` — threshold-free (sklearn).
- :func:`best_dice` — the best Dice over *all* thresholds (an upper bound that uses the labels).
- :func:`healthy_threshold` + :func:`dice_at_threshold` — the honest unsupervised operating
  point: a percentile (95th/99th) of scores on healthy validation images.
- :func:`reduce_maps` + :func:`image_auroc` / :func:`image_ap` — image-level detection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _pixels(
    scores: Any, truth: Any | None = None, mask: Any | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated flat float64 scores (and bool labels) inside ``mask``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("scores are empty")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
    t = None
    if truth is not None:
        t_raw = np.asarray(truth)
        if t_raw.shape != s.shape:
            raise ValueError(f"scores {s.shape} and ground truth {t_raw.shape} differ in shape")
        if not np.isin(t_raw, (0, 1)).all():
            raise ValueError("ground truth must be binary (0/1 or bool)")
        t = t_raw.astype(bool)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != s.shape:
            raise ValueError(f"scores {s.shape} and mask {m.shape} differ in shape")
        m = m.astype(bool)
        if not m.any():
            raise ValueError("the mask selects no pixels")
        s = s[m]
        t = None if t is None else t[m]
    return s.ravel(), None if t is None else t.ravel()


def _need_both(t: np.ndarray, what: str) -> None:
    if not t.any():
        raise ValueError(f"{what}: the ground truth has no positive (anomalous) pixels")
    if t.all():
        raise ValueError(f"{what}: the ground truth has no negative (normal) pixels")


def pixel_auroc(scores: Any, truth: Any, mask: Any | None = None) -> float:
    """Area under the ROC curve over all pixels (inside ``mask``)."""
    s, t = _pixels(scores, truth, mask)
    _need_both(t, "pixel AUROC")
    return float(roc_auc_score(t, s))


def pixel_ap(scores: Any, truth: Any, mask: Any | None = None) -> float:
    """Average precision (area under the precision-recall curve) over all pixels."""
    s, t = _pixels(scores, truth, mask)
    _need_both(t, "pixel AP")
    return float(average_precision_score(t, s))


def dice(pred: Any, truth: Any) -> float:
    """Dice coefficient 2|P ∩ T| / (|P| + |T|) of two boolean arrays (1.0 if both are empty)."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {t.shape} differ in shape")
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)


def best_dice(scores: Any, truth: Any, mask: Any | None = None) -> tuple[float, float]:
    """Exact best Dice over every threshold, and a threshold that attains it.

    Sorting the scores once gives, for each distinct value v, the true positives of the
    prediction ``score >= v`` as a cumulative sum; every distinct prediction set is one of
    these (or empty), so the maximum is exact, in O(n log n).

    Returns
    -------
    dice : float
        The best Dice.
    threshold : float
        With ``pred = scores > threshold`` this Dice is reached (the next float below the
        chosen score value, so it is a strict threshold like everywhere in this module).
    """
    s, t = _pixels(scores, truth, mask)
    _need_both(t, "best Dice")
    order = np.argsort(-s, kind="stable")
    s_desc, t_desc = s[order], t[order]
    tp = np.cumsum(t_desc)
    # Only cut where the next score differs: ties must be predicted together.
    last_of_tie = np.r_[s_desc[1:] != s_desc[:-1], True]
    k = np.flatnonzero(last_of_tie)
    dices = 2.0 * tp[k] / (k + 1 + t.sum())
    best = int(np.argmax(dices))
    return float(dices[best]), float(np.nextafter(s_desc[k[best]], -np.inf))


def healthy_threshold(
    healthy_scores: Any, percentile: float = 95.0, mask: Any | None = None
) -> float:
    """The ``percentile`` of healthy-validation pixel scores (inside ``mask``)."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    s, _ = _pixels(healthy_scores, None, mask)
    return float(np.percentile(s, percentile))


def dice_at_threshold(scores: Any, truth: Any, threshold: float, mask: Any | None = None) -> float:
    """Dice of ``scores > threshold`` against the ground truth (pixels inside ``mask``)."""
    s, t = _pixels(scores, truth, mask)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return dice(s > threshold, t)


def false_positive_rate(scores: Any, threshold: float, mask: Any | None = None) -> float:
    """Fraction of (healthy) pixels with ``score > threshold`` (inside ``mask``)."""
    s, _ = _pixels(scores, None, mask)
    return float(np.mean(s > threshold))


def reduce_maps(
    maps: Any,
    reduction: str = "mean",
    k: int | float = 0.01,
    masks: Any | None = None,
) -> np.ndarray:
    """One anomaly score per image from its map.

    Parameters
    ----------
    maps : array-like
        ``(N, ...)`` anomaly maps.
    reduction : {"mean", "max", "topk"}
        Mean, maximum, or mean of the ``k`` highest pixels.
    k : int or float
        For ``topk``: a pixel count (int >= 1) or a fraction in (0, 1] of the image's
        (masked) pixels, at least one pixel.
    masks : array-like, optional
        ``(N, ...)`` foreground masks; each image is reduced over its own mask.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64 image scores.
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim < 2 or m.shape[0] == 0:
        raise ValueError(f"maps must be a non-empty (N, ...) array, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("maps contain NaN or infinite values")
    if reduction not in ("mean", "max", "topk"):
        raise ValueError(f"reduction must be 'mean', 'max' or 'topk', got {reduction!r}")
    flat = m.reshape(len(m), -1)
    if masks is None:
        keep = np.ones_like(flat, dtype=bool)
    else:
        keep = np.asarray(masks, dtype=bool)
        if keep.shape != m.shape:
            raise ValueError(f"maps {m.shape} and masks {keep.shape} differ in shape")
        keep = keep.reshape(len(m), -1)
        if not keep.any(axis=1).all():
            raise ValueError("a mask selects no pixels of its image")
    if isinstance(k, float) and not 0.0 < k <= 1.0:
        raise ValueError(f"a fractional k must be in (0, 1], got {k}")
    if isinstance(k, int) and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    out = np.empty(len(m))
    for i, (row, sel) in enumerate(zip(flat, keep, strict=True)):
        v = row[sel]
        if reduction == "mean":
            out[i] = v.mean()
        elif reduction == "max":
            out[i] = v.max()
        else:
            n = int(k) if isinstance(k, int) else int(np.ceil(k * v.size))
            n = min(max(n, 1), v.size)
            out[i] = np.partition(v, v.size - n)[v.size - n :].mean()
    return out


def _image_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be matching 1-D arrays")
    if not np.all(np.isfinite(s)):
        raise ValueError("image scores contain NaN or infinite values")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("image labels must be 0 (normal) or 1 (anomalous)")
    y = y.astype(bool)
    _need_both(y, "image-level metric")
    return y, s


def image_auroc(labels: Any, scores: Any) -> float:
    """Image-level ROC-AUC (labels 0 = normal, 1 = anomalous)."""
    y, s = _image_inputs(labels, scores)
    return float(roc_auc_score(y, s))


def image_ap(labels: Any, scores: Any) -> float:
    """Image-level average precision (anomalous = positive class)."""
    y, s = _image_inputs(labels, scores)
    return float(average_precision_score(y, s))


def localization_report(
    maps: Any,
    truth: Any,
    healthy_val_maps: Any,
    masks: Any | None = None,
    healthy_val_masks: Any | None = None,
    healthy_test_maps: Any | None = None,
    healthy_test_masks: Any | None = None,
    percentiles: tuple[float, ...] = (95.0, 99.0),
) -> dict[str, float]:
    """All pixel metrics of one method in one dictionary.

    Parameters
    ----------
    maps, truth : array-like
        Anomaly maps and ground-truth masks of the test images (same shape).
    healthy_val_maps : array-like
        Maps of healthy validation images; their percentiles set the unsupervised thresholds.
    masks, healthy_val_masks, healthy_test_maps, healthy_test_masks : array-like, optional
        Foreground masks, and maps of healthy *test* images for the false-positive rate.
    percentiles : tuple of float
        Healthy percentiles to threshold at.

    Returns
    -------
    dict
        ``pixel_auroc``, ``pixel_ap``, ``best_dice``, ``best_dice_threshold``, and per
        percentile p: ``threshold_healthy{p}``, ``dice_healthy{p}``, ``fpr_normal_pixels{p}``
        (non-lesion pixels of the test images) and ``healthy_fpr{p}`` (healthy test images,
        when given).
    """
    out = {
        "pixel_auroc": pixel_auroc(maps, truth, masks),
        "pixel_ap": pixel_ap(maps, truth, masks),
    }
    out["best_dice"], out["best_dice_threshold"] = best_dice(maps, truth, masks)
    t = np.asarray(truth, dtype=bool)
    normal = ~t if masks is None else (~t & np.asarray(masks, dtype=bool))
    for p in percentiles:
        tag = f"{p:g}"
        thr = healthy_threshold(healthy_val_maps, p, healthy_val_masks)
        out[f"threshold_healthy{tag}"] = thr
        out[f"dice_healthy{tag}"] = dice_at_threshold(maps, truth, thr, masks)
        out[f"fpr_normal_pixels{tag}"] = false_positive_rate(maps, thr, normal)
        if healthy_test_maps is not None:
            out[f"healthy_fpr{tag}"] = false_positive_rate(
                healthy_test_maps, thr, healthy_test_masks
            )
    return out
