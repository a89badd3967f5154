"""DISYRE v2 disentangled anomaly generator (diffad.image.dag)."""

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from diffad.image.dag import (
    SHAPES,
    DAGConfig,
    _kmeans_1d,
    corrupt,
    corrupt_batch,
    sample_shape,
)

OFF = DAGConfig(max_texture_alpha=0.0, max_bias=0.0)
NO_BLUR = dict(blur_prob=0.0, max_rotation_deg=0.0)


def phantom(size: int, channels: int = 1, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Brain-like test image: a textured ellipse in [0.2, 0.9] on an exactly-zero background,
    with a dark (but foreground) ventricle-like spot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    inside = ((yy - 0.5) / 0.38) ** 2 + ((xx - 0.5) / 0.3) ** 2 <= 1.0
    tex = rng.random((channels, size, size))
    tex = 0.2 + 0.7 * (0.5 * tex + 0.5 * np.sin(8 * xx) ** 2)
    tex[:, np.abs(yy - 0.5) + np.abs(xx - 0.5) < 0.06] = 0.05
    return (tex * inside).astype(dtype)


def test_forced_zero_severity_returns_the_input_exactly():
    for channels in (1, 3):
        for dtype in (np.float32, np.float64):
            img = phantom(32, channels, dtype=dtype)
            pool = np.stack([phantom(32, channels, s, dtype) for s in (1, 2)])
            for seed in range(20):
                out, mask, sev = corrupt(img, np.random.default_rng(seed), pool, config=OFF)
                assert np.array_equal(out, img) and out.dtype == img.dtype
                assert sev == 0.0 and mask.any()  # a shape is drawn, it just does nothing
    out, _, _ = corrupt(phantom(32)[0], np.random.default_rng(0), config=OFF)
    assert np.array_equal(out, phantom(32)[0])


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_mask_covers_every_changed_pixel(size, channels):
    img = phantom(size, channels)
    pool = np.stack([phantom(size, channels, s) for s in (1, 2, 3)])
    rng = np.random.default_rng(size + channels)
    n_changed = 0
    for k in range(200):
        out, mask, sev = corrupt(img, rng, pool if k % 2 else None)
        changed = (out != img).any(axis=0)
        assert mask.dtype == bool and mask.shape == (size, size)
        assert not (changed & ~mask).any()
        assert 0.0 <= sev <= 1.0
        n_changed += changed.any()
    assert n_changed >= 190  # the check is not vacuous: nearly every draw changes pixels


def test_background_pixels_never_change():
    img = phantom(48, 3)
    img[:, :, :6] = 0.0  # zero border strip on top of the zero outside of the ellipse
    img[:, 20:28, 20:28] = 0.0  # a zero hole inside the object
    background = ~(img > 0).any(axis=0)
    rng = np.random.default_rng(1)
    for _ in range(200):
        out, mask, _ = corrupt(img, rng)
        assert np.all(out[:, background] == 0.0) and not (mask & background).any()
    # A higher threshold protects every pixel whose channels are all <= it.
    low = ~(img > 0.3).any(axis=0)
    for _ in range(100):
        out, mask, _ = corrupt(img, rng, background=0.3)
        assert np.array_equal(out[:, low], img[:, low]) and not (mask & low).any()


def test_image_without_foreground_is_returned_unchanged():
    for img, bg in [(np.zeros((1, 16, 16), np.float32), 0.0), (np.full((16, 16), 0.2), 0.5)]:
        out, mask, sev = corrupt(img, np.random.default_rng(0), background=bg)
        assert np.array_equal(out, img) and out.dtype == img.dtype
        assert not mask.any() and mask.shape == (16, 16) and sev == 0.0


def test_same_seed_same_anomaly_and_different_seeds_differ():
    img = phantom(64, 3)
    pool = np.stack([phantom(64, 3, s) for s in (4, 5)])
    a = corrupt(img, np.random.default_rng(7), pool)
    b = corrupt(img, np.random.default_rng(7), pool)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    others = [corrupt(img, np.random.default_rng(s), pool) for s in range(8, 13)]
    assert all(not np.array_equal(a[0], o[0]) for o in others)
    assert len({o[2] for o in others}) == len(others)


def test_severity_is_alpha_tex_when_the_bias_is_off():
    img, pool = phantom(32), np.stack([phantom(32, seed=3)])
    for alpha in (0.0, 0.3, 1.0):
        cfg = DAGConfig(min_texture_alpha=alpha, max_texture_alpha=alpha, max_bias=0.0)
        for seed in range(10):
            assert corrupt(img, np.random.default_rng(seed), pool, config=cfg)[2] == alpha
    sev = [corrupt(img, np.random.default_rng(s), pool)[2] for s in range(300)]
    assert 0.0 <= min(sev) and max(sev) <= 1.0 and np.std(sev) > 0.1


def test_severity_is_the_effective_bias_when_the_texture_is_off():
    # Mid-grey foreground: a bias of 0.2 never clips, so the effective bias is exactly 0.2
    # and every pixel moves in the same direction by at most 0.2.
    img = np.where(phantom(32) > 0, 0.4 + 0.2 * phantom(32, seed=9), 0.0).astype(np.float32)
    cfg = DAGConfig(max_texture_alpha=0.0, min_bias=0.2, max_bias=0.2)
    for seed in range(20):
        out, mask, sev = corrupt(img, np.random.default_rng(seed), config=cfg)
        diff = (out.astype(np.float64) - img)[0][mask]
        assert sev == pytest.approx(0.2, abs=1e-9)
        assert np.all(diff >= -1e-7) or np.all(diff <= 1e-7)
        assert np.abs(diff).max() <= 0.2 + 1e-6
    # Near-white foreground: a positive bias clips, which lowers the severity below α_b.
    bright = np.where(phantom(32) > 0, 0.95, 0.0).astype(np.float32)
    cfg = DAGConfig(max_texture_alpha=0.0, min_bias=0.5, max_bias=0.5)
    sev = [corrupt(bright, np.random.default_rng(s), config=cfg)[2] for s in range(40)]
    assert max(sev) == pytest.approx(0.5) and min(sev) < 0.06


def test_texture_is_blended_and_rescaled_to_the_target_range():
    img = phantom(32)
    flat = np.full((1, 1, 32, 32), 0.8, np.float32)  # a constant texture maps to mid-range
    cfg = DAGConfig(min_texture_alpha=1.0, max_bias=0.0, blur_prob=0.0)
    for seed in range(20):
        out, mask, sev = corrupt(img, np.random.default_rng(seed), flat, config=cfg)
        inside = img[0][mask]
        expected = np.float32((inside.min() + inside.max()) / 2.0)
        assert np.allclose(out[0][mask], expected, atol=1e-6) and sev == 1.0
    # Texture from the image itself: full-strength pixels stay within the target's range.
    for seed in range(20):
        out, mask, _ = corrupt(img, np.random.default_rng(seed), config=cfg)
        inside = img[0][mask]
        assert inside.min() - 1e-6 <= out[0][mask].min() <= out[0][mask].max()
        assert out[0][mask].max() <= inside.max() + 1e-6
        assert not np.array_equal(out, img)


def test_shape_kinds_are_equally_likely():
    fg = np.ones((32, 32), bool)
    rng = np.random.default_rng(0)
    counts = {k: 0 for k in SHAPES}
    for _ in range(600):
        counts[sample_shape(fg, rng)[1]] += 1
    # Binomial(600, 1/3): mean 200, sd 11.5; ±5 sd.
    assert all(142 <= c <= 258 for c in counts.values()), counts
    only_discs = DAGConfig(shape_probs=(0.0, 1.0, 0.0))
    assert {sample_shape(fg, rng, only_discs)[1] for _ in range(30)} == {"disc"}


@pytest.mark.parametrize("size", [32, 64])
def test_shape_geometry_and_size_range(size):
    fg = np.ones((size, size), bool)
    rng = np.random.default_rng(size)
    lo, hi = 10 / 64 * size, 44 / 64 * size
    fill = {k: [] for k in SHAPES}
    for _ in range(300):
        s, kind = sample_shape(fg, rng, DAGConfig(**NO_BLUR))
        assert set(np.unique(s)) <= {0.0, 1.0}  # no blur: a hard shape
        assert ndimage.label(s)[1] == 1  # one connected piece
        ys, xs = np.nonzero(s)
        box_h, box_w = np.ptp(ys) + 1, np.ptp(xs) + 1
        assert max(box_h, box_w) <= hi + 1
        touches = ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1
        if not touches:  # shapes cut by the image border are smaller than drawn
            assert min(box_h, box_w) >= (lo - 1 if kind != "blob" else 0.4 * lo)
            fill[kind].append(s.sum() / (box_h * box_w))
    assert np.allclose(fill["rectangle"], 1.0)  # unrotated rectangles fill their box
    assert abs(np.median(fill["disc"]) - np.pi / 4) < 0.06
    assert 0.4 < np.median(fill["blob"]) < 0.9 and np.std(fill["blob"]) > 0.02
    rotated = [
        sample_shape(fg, rng, DAGConfig(blur_prob=0.0, shape_probs=(1, 0, 0)))[0] for _ in range(50)
    ]
    assert any(
        s.sum() < (np.ptp(np.nonzero(s)[0]) + 1) * (np.ptp(np.nonzero(s)[1]) + 1) for s in rotated
    )
    blurred = sample_shape(fg, rng, DAGConfig(blur_prob=1.0, blur_sigma_range=(0.05, 0.05)))[0]
    assert blurred.max() == 1.0 and ((blurred > 0) & (blurred < 1)).any()


def test_tiny_images_keep_two_pixel_shapes():
    fg = np.ones((6, 6), bool)
    rng = np.random.default_rng(0)
    for _ in range(50):
        s, _ = sample_shape(fg, rng, DAGConfig(**NO_BLUR, shape_probs=(1, 0, 0)))
        ys, xs = np.nonzero(s)
        assert min(np.ptp(ys), np.ptp(xs)) >= 1  # at least 2 px across


def test_output_range_dtype_and_shape():
    rng = np.random.default_rng(3)
    for img in (phantom(32, 3, dtype=np.float64), phantom(32)[0], phantom(32, dtype=np.float16)):
        for _ in range(30):
            out, mask, sev = corrupt(img, rng)
            assert out.shape == img.shape and out.dtype == img.dtype
            assert out.min() >= 0.0 and out.max() <= 1.0 and isinstance(sev, float)
    # Values a hair outside [0, 1] are tolerated and clipped.
    img = phantom(16) + np.float32(5e-5)
    assert corrupt(img, rng)[0].max() <= 1.0


def test_corrupt_batch_takes_textures_from_other_images():
    ramp = phantom(32)
    flat = np.where(ramp > 0, 0.7, 0.0).astype(np.float32)
    batch = np.concatenate([ramp, flat])  # (2, 32, 32): the 2-D batch form
    cfg = DAGConfig(min_texture_alpha=1.0, max_bias=0.0, blur_prob=0.0)
    out, masks, sev = corrupt_batch(batch, np.random.default_rng(0), config=cfg)
    assert out.shape == batch.shape and out.dtype == batch.dtype and masks.shape == batch.shape
    assert np.array_equal(sev, [1.0, 1.0])
    inside = ramp[0][masks[0]]  # the ramp's texture is the flat image: its mid-range value
    assert np.allclose(out[0][masks[0]], (inside.min() + inside.max()) / 2, atol=1e-6)
    again = corrupt_batch(batch, np.random.default_rng(0), config=cfg)
    assert np.array_equal(out, again[0]) and np.array_equal(masks, again[1])
    out1, masks1, _ = corrupt_batch(batch[:1, None], np.random.default_rng(0))
    assert out1.shape == (1, 1, 32, 32) and masks1.shape == (1, 32, 32)
    changed = (out1[0] != batch[:1]).any(axis=0)
    assert not (changed & ~masks1[0]).any()


def test_kmeans_finds_separated_intensity_groups():
    rng = np.random.default_rng(0)
    means = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    values = np.concatenate(
        [
            m + 0.01 * rng.standard_normal(n)
            for m, n in zip(means, [50, 400, 30, 200, 10], strict=True)
        ]
    )
    assert np.allclose(_kmeans_1d(values, 5), means, atol=0.01)
    assert np.allclose(_kmeans_1d(np.full(20, 0.4), 5), 0.4)  # degenerate: all equal


GOOD = phantom(16)
BAD_INPUTS = [
    (np.zeros(16), "shape"),
    (np.zeros((1, 1, 16, 16)), "shape"),
    (np.zeros((16, 16, 3)), "channels"),
    (np.where(GOOD > 0, np.nan, 0.0), "NaN"),
    (np.where(GOOD > 0, np.inf, 0.0), "NaN or inf"),
    (GOOD * 2.0, r"\[0, 1\]"),
    (GOOD - 0.5, r"\[0, 1\]"),
    (np.zeros((1, 16, 16), np.uint8), "dtype"),
    (np.zeros((1, 1, 16)), "too small"),
]


@pytest.mark.parametrize(("image", "message"), BAD_INPUTS)
def test_bad_images_raise(image, message):
    with pytest.raises(ValueError, match=message):
        corrupt(image, np.random.default_rng(0))


def test_bad_arguments_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="Generator"):
        corrupt(GOOD, np.random.RandomState(0))
    with pytest.raises(ValueError, match="Generator"):
        corrupt(GOOD, 0)
    with pytest.raises(ValueError, match="textures must have shape"):
        corrupt(GOOD, rng, textures=np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="textures must have shape"):
        corrupt(GOOD, rng, textures=np.zeros((0, 1, 16, 16)))
    with pytest.raises(ValueError, match=r"textures\[0\] contains NaN"):
        corrupt(GOOD, rng, textures=np.full((1, 1, 16, 16), np.nan))
    with pytest.raises(ValueError, match="background"):
        corrupt(GOOD, rng, background=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        corrupt_batch(GOOD[0], rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt_batch(np.stack([GOOD, GOOD + 3]), rng)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(shape_probs=(0.5, 0.5, 0.5)),
        dict(shape_probs=(1.2, -0.2, 0.0)),
        dict(size_range=(0.5, 0.2)),
        dict(size_range=(0.1, 1.5)),
        dict(max_texture_alpha=1.5),
        dict(min_bias=0.5, max_bias=0.2),
        dict(n_clusters=0),
        dict(blur_prob=1.5),
        dict(max_rotation_deg=-1.0),
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        DAGConfig(**kwargs)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DAGConfig().max_bias = 0.0  # type: ignore[misc]
