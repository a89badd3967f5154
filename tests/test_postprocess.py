"""Post-processing of anomaly maps: masks, erosion, median filter, small components."""

import numpy as np
import pytest
from scipy import ndimage

from diffad.image.postprocess import (
    apply_mask,
    erode_mask,
    foreground_mask,
    median_filter,
    postprocess,
    remove_small_components,
    segment,
)


def test_foreground_mask_fills_holes_and_handles_channels():
    img = np.zeros((1, 1, 9, 9), np.float32)
    img[0, 0, 2:7, 2:7] = 1.0
    img[0, 0, 4, 4] = 0.0  # a dark hole inside the object is still foreground
    m = foreground_mask(img)
    assert m.shape == (1, 9, 9) and m.dtype == bool
    assert m[0, 4, 4] and m.sum() == 25
    assert foreground_mask(img, fill_holes=False).sum() == 24


def test_erosion_is_per_image():
    mask = np.zeros((2, 9, 9), bool)
    mask[0, 2:7, 2:7] = True
    mask[1] = True
    eroded = erode_mask(mask, 1)
    assert eroded[0].sum() == 9  # 5×5 → 3×3
    # Whole-image masks erode only at the picture border, never across the stack axis.
    assert eroded[1].sum() == 49
    assert np.array_equal(erode_mask(mask, 0), mask)
    with pytest.raises(ValueError):
        erode_mask(mask, -1)


def test_apply_mask_and_median():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 10, 10)).astype(np.float32)
    mask = np.ones((2, 1, 10, 10), bool)
    mask[:, :, :, :3] = False
    out = apply_mask(maps, mask, erosion=0)
    assert np.all(out[:, :, :3] == 0) and np.array_equal(out[:, :, 3:], maps[:, :, 3:])
    ref = np.stack([ndimage.median_filter(m, size=5, mode="reflect") for m in maps])
    np.testing.assert_array_equal(median_filter(maps, 5), ref)
    with pytest.raises(ValueError, match="differs"):
        apply_mask(maps, mask[:1])


def test_remove_small_components_threshold_is_seven_pixels():
    b = np.zeros((1, 12, 12), bool)
    b[0, 0, 0:7] = True  # 7 px: dropped
    b[0, 5, 0:8] = True  # 8 px: kept
    b[0, 9:11, 9:11] = True  # 4 px: dropped
    out = remove_small_components(b)
    assert out.sum() == 8 and out[0, 5].sum() == 8
    # 8-connectivity: a diagonal line of 8 pixels is one component.
    d = np.zeros((1, 10, 10), bool)
    d[0, np.arange(8), np.arange(8)] = True
    assert remove_small_components(d).sum() == 8


def test_postprocess_and_segment():
    maps = np.zeros((1, 16, 16), np.float32)
    maps[0, 4:10, 4:10] = 1.0  # a 36-pixel blob survives the median filter
    maps[0, 13, 13] = 5.0  # a single hot pixel does not
    mask = np.ones((1, 16, 16), bool)
    pp = postprocess(maps, mask, erosion=0)
    assert pp[0, 13, 13] == 0 and pp[0, 6, 6] == 1.0
    seg = segment(pp, 0.5)
    assert seg[0, 6, 6] and not seg[0, 13, 13]
    assert np.array_equal(postprocess(maps, None, median_size=None), maps)
    with pytest.raises(ValueError, match="shape"):
        postprocess(np.zeros(5))
    with pytest.raises(ValueError, match="empty"):
        postprocess(np.zeros((0, 4, 4)))
