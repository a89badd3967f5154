import numpy as np
import pytest

from diffad.data.synthetic import add_lesions, lesion_alpha, lesion_dataset


def disc_mask(n=16, r=5):
    yy, xx = np.mgrid[0:n, 0:n]
    return (yy - n / 2) ** 2 + (xx - n / 2) ** 2 <= r**2


def test_seeded_and_seed_dependent():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.6, size=(4, 1, 16, 16)).astype(np.float32)
    a, ma = lesion_dataset(x, seed=3, n_lesions=(1, 2))
    b, mb = lesion_dataset(x, seed=3, n_lesions=(1, 2))
    c, mc = lesion_dataset(x, seed=4, n_lesions=(1, 2))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and ma.dtype == bool and ma.shape == (4, 1, 16, 16)
    assert a.min() >= 0 and a.max() <= 1
    # image i is exactly add_lesions with the generator default_rng([seed, i])
    d, md = lesion_dataset(x, seed=3)
    one, mone = add_lesions(x[2], rng=np.random.default_rng([3, 2]))
    assert np.array_equal(d[2], one) and np.array_equal(md[2, 0], mone)


def test_lesions_stay_in_foreground_and_change_only_there():
    fg = disc_mask()
    x = np.where(fg, 0.5, 0.0).astype(np.float32)
    for seed in range(10):
        out, truth = add_lesions(x, fg, n_lesions=2, rng=seed)
        assert truth.any() and not truth[~fg].any()
        assert np.array_equal(out[~fg], x[~fg])  # background untouched
        assert np.abs(out - x)[truth].mean() > 0.05  # the lesion is visible


@pytest.mark.parametrize("effect,sign", [("hyper", 1), ("hypo", -1)])
def test_intensity_shift_direction(effect, sign):
    x = np.full((16, 16), 0.5, dtype=np.float32)
    out, truth = add_lesions(x, effects=(effect,), delta=(0.3, 0.3), softness=(0, 0), rng=1)
    np.testing.assert_allclose(out[truth], 0.5 + sign * 0.3, atol=1e-6)
    assert np.array_equal(out[~truth], x[~truth])


def test_texture_from_donor_uses_target_range():
    # a rough target (range inside any lesion > 0.2), so no range widening applies
    x = np.random.default_rng(4).uniform(0.2, 0.8, size=(16, 16)).astype(np.float32)
    donor = np.random.default_rng(5).uniform(size=(16, 16))
    out, truth = add_lesions(x, effects=("texture",), donor=donor, softness=(0, 0), rng=2)
    inside = out[truth]
    assert inside.min() >= x[truth].min() - 1e-6 and inside.max() <= x[truth].max() + 1e-6
    assert not np.allclose(inside, x[truth])


def test_ellipse_area_and_shape_errors():
    a = lesion_alpha(64, 64, (32, 32), (10, 5), 0.0, "ellipse", 0.0, np.random.default_rng(0))
    assert abs(a.sum() - np.pi * 50) / (np.pi * 50) < 0.05
    with pytest.raises(ValueError):
        lesion_alpha(8, 8, (4, 4), (2, 2), 0.0, "square", 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        add_lesions(np.zeros((8, 8)), np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="NaN"):
        add_lesions(np.full((8, 8), np.nan))
    with pytest.raises(ValueError):
        add_lesions(np.zeros((8, 8)), effects=("glow",))
    with pytest.raises(ValueError):
        lesion_dataset(np.zeros((8, 8)))
