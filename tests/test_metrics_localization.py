import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from diffad.metrics.localization import (
    best_dice,
    dice,
    dice_at_threshold,
    false_positive_rate,
    healthy_threshold,
    image_ap,
    image_auroc,
    localization_report,
    pixel_ap,
    pixel_auroc,
    reduce_maps,
)


def brute_force_best_dice(s, t):
    """Oracle: Dice of ``s >= v`` for every distinct value v (plus the empty prediction)."""
    s, t = s.ravel(), t.ravel().astype(bool)
    best = 0.0
    for v in np.unique(s):
        p = s >= v
        best = max(best, 2 * (p & t).sum() / (p.sum() + t.sum()))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_dice_is_exact_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    t = rng.random((3, 7, 7)) < 0.2
    t[0, 0, 0] = True
    # rounded scores create many ties, which the sweep must keep together
    s = np.round(t * rng.uniform(0, 1, t.shape) + rng.uniform(0, 1.2, t.shape), 1)
    d, thr = best_dice(s, t)
    assert d == pytest.approx(brute_force_best_dice(s, t), abs=1e-12)
    assert dice(s > thr, t) == pytest.approx(d, abs=1e-12)
    assert dice_at_threshold(s, t, thr) == pytest.approx(d, abs=1e-12)


def test_perfect_separation_and_mask_restriction():
    t = np.zeros((2, 8, 8), bool)
    t[:, 2:4, 2:4] = True
    s = t.astype(float) + 0.1
    assert best_dice(s, t)[0] == 1.0
    assert pixel_auroc(s, t) == 1.0 and pixel_ap(s, t) == 1.0
    # a false-positive blob outside the mask is ignored only when the mask is given
    s[:, 6:, 6:] = 5.0
    mask = np.ones_like(t)
    mask[:, 6:, 6:] = False
    assert pixel_ap(s, t) < 1.0 and pixel_ap(s, t, mask) == 1.0


def test_pixel_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    t = rng.random((4, 6, 6)) < 0.3
    s = rng.normal(size=t.shape) + t
    m = rng.random(t.shape) < 0.8
    assert pixel_auroc(s, t, m) == pytest.approx(roc_auc_score(t[m], s[m]))
    assert pixel_ap(s, t, m) == pytest.approx(average_precision_score(t[m], s[m]))


def test_healthy_threshold_and_fpr():
    rng = np.random.default_rng(2)
    healthy = rng.normal(size=(50, 10, 10))
    thr = healthy_threshold(healthy, 95)
    assert thr == pytest.approx(np.percentile(healthy, 95))
    assert false_positive_rate(healthy, thr) == pytest.approx(0.05, abs=0.002)
    other = rng.normal(size=(50, 10, 10))
    assert 0.03 < false_positive_rate(other, thr) < 0.07
    with pytest.raises(ValueError):
        healthy_threshold(healthy, 101)


def test_reductions():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, :2] = [4.0, 2.0]
    maps[1] = 1.0
    assert np.allclose(reduce_maps(maps, "max"), [4.0, 1.0])
    assert np.allclose(reduce_maps(maps, "mean"), [6 / 16, 1.0])
    assert np.allclose(reduce_maps(maps, "topk", k=2), [3.0, 1.0])
    assert np.allclose(reduce_maps(maps, "topk", k=0.125), [3.0, 1.0])  # 2 of 16 pixels
    masks = np.zeros_like(maps, bool)
    masks[:, 0, 1:] = True
    assert np.allclose(reduce_maps(maps, "max", masks=masks), [2.0, 1.0])
    with pytest.raises(ValueError):
        reduce_maps(maps, "median")
    with pytest.raises(ValueError):
        reduce_maps(maps, "topk", k=0)


def test_image_level_metrics_match_sklearn():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert image_auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert image_ap(y, s) == pytest.approx(average_precision_score(y, s))
    with pytest.raises(ValueError, match="no positive"):
        image_auroc(np.zeros(3), np.ones(3))


def test_report_and_errors():
    rng = np.random.default_rng(3)
    t = rng.random((5, 8, 8)) < 0.1
    t[0, 0, 0] = True
    s = rng.normal(size=t.shape) + 2 * t
    healthy = rng.normal(size=(5, 8, 8))
    r = localization_report(s, t, healthy, healthy_test_maps=rng.normal(size=(5, 8, 8)))
    assert set(r) >= {"pixel_ap", "best_dice", "dice_healthy95", "dice_healthy99", "healthy_fpr95"}
    assert r["best_dice"] >= r["dice_healthy95"] and r["best_dice"] >= r["dice_healthy99"]
    assert 0 <= r["healthy_fpr99"] <= r["healthy_fpr95"] <= 1
    with pytest.raises(ValueError, match="shape"):
        pixel_ap(s[:, :4], t)
    with pytest.raises(ValueError, match="NaN"):
        pixel_ap(np.where(t, np.nan, s), t)
    with pytest.raises(ValueError, match="no positive"):
        best_dice(s, np.zeros_like(t))
    with pytest.raises(ValueError, match="binary"):
        pixel_auroc(s, t * 2.5)
    with pytest.raises(ValueError, match="no pixels"):
        pixel_ap(s, t, np.zeros_like(t))
