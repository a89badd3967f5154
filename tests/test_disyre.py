"""DisyreLocalizer: training, maps, the shared localiser interface, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffad.conformal.conformal_detector import ConformalDetector
from diffad.diffusion.cold import (
    cold_sampler_chain,
    severity_levels,
    severity_schedule,
    severity_step,
)
from diffad.image.disyre_localizer import DisyreLocalizer
from diffad.image.localizers import load_localizer
from diffad.selective.dal import SelectiveTest

pytestmark = pytest.mark.usefixtures("torch_threads")

S = 16


def _images(n: int, seed: int) -> np.ndarray:
    """Bright discs on a zero background with mild texture, in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    out = np.zeros((n, 1, S, S), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(6, 10, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(20, 36)
        out[i, 0] = disc * np.clip(0.6 + 0.1 * rng.standard_normal((S, S)), 0, 1)
    return out


def _fit(**kw) -> DisyreLocalizer:
    params = dict(
        unet={"channels": [8, 16]},
        train_steps=60,
        batch_size=8,
        lr=3e-3,
        foreground_threshold=0.0,
        verbose=False,
        device="cpu",
    )
    params.update(kw)
    return DisyreLocalizer(**params).fit(_images(24, 0))


@pytest.fixture(scope="module")
def fitted():
    return _fit()


def test_severity_steps_follow_the_schedule():
    schedule = severity_schedule()
    levels = severity_levels(schedule)
    assert schedule.num_steps == 100 and np.all(np.diff(levels) < 0)
    t = severity_step(schedule, np.array([1.0, 0.0, levels[49]]))
    assert t.tolist() == [0, 99, 49]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        severity_step(schedule, 1.5)
    chain = cold_sampler_chain(schedule, (99, 24, 49))
    assert [s.t for s in chain.steps] == [24, 49, 99]
    assert chain.steps[-1].c_eps == 1.0
    assert chain.steps[0].c_eps == pytest.approx(1 - levels[49] / levels[24])


def test_training_lowers_the_loss_and_is_seeded(fitted):
    losses = fitted.loss_history_
    assert losses.shape == (60,) and np.all(np.isfinite(losses))
    assert losses[-15:].mean() < 0.8 * losses[:15].mean()
    again = _fit()
    np.testing.assert_array_equal(again.loss_history_, losses)
    other = _fit(random_state=1)
    assert not np.array_equal(other.loss_history_, losses)


def test_maps_are_zero_on_the_background_and_larger_on_an_anomaly(fitted):
    x = _images(6, 5)
    maps = fitted.anomaly_map(x)
    assert maps.shape == (6, S, S) and maps.dtype == np.float32
    assert np.all(maps[x[:, 0] <= 0] == 0)
    bad = x.copy()
    bad[:, 0, 6:10, 6:10] = 1.0  # a bright square inside every disc
    assert np.all(fitted.decision_function(bad) > fitted.decision_function(x))


def test_single_severity_and_sampler_options(fitted):
    x = _images(3, 6)
    rest = fitted.restore(x)
    assert len(rest) == 4 and all(r.shape == x.shape for r in rest)
    single = fitted.set_params(severities=(49,))
    try:
        (r49,) = single.restore(x)
        np.testing.assert_array_equal(r49, rest[2])  # the ensemble's pass at t = 49
        fitted.set_params(severities=(24, 49), inference="sampler")
        assert len(fitted.restore(x)) == 1 and fitted.anomaly_map(x).shape == (3, S, S)
    finally:
        fitted.set_params(severities=(99, 74, 49, 24), inference="ensemble")


def test_interface_shared_with_ddpm(fitted, tmp_path):
    fitted.calibrate(_images(8, 7))
    assert fitted.threshold_ > 0 and len(fitted.calibration_scores_) == 8
    region_test = SelectiveTest(fitted, device="cpu").calibrate(_images(8, 7))
    assert region_test.lam_ > 0 and len(region_test.check_images_) == 2  # 8 × 0.25
    path = fitted.save(tmp_path / "m")
    assert json.loads((path / "config.json").read_text())["class"] == "DisyreLocalizer"
    loaded = load_localizer(path, device="cpu")
    assert isinstance(loaded, DisyreLocalizer) and loaded.severities == (99, 74, 49, 24)
    x = _images(4, 8)
    np.testing.assert_array_equal(loaded.anomaly_map(x), fitted.anomaly_map(x))
    np.testing.assert_array_equal(loaded.predict(x), fitted.predict(x))
    conf = ConformalDetector(loaded, prefit=True).fit(_images(9, 10))
    p = conf.p_values(x)
    assert p.shape == (4,) and np.all((p > 0) & (p <= 1))


def test_selective_test_runs_on_the_calibrated_defaults(fitted):
    from diffad.image.region_maps import mean_abs_error, restoration_map

    region_test = SelectiveTest(fitted, device="cpu").calibrate(_images(8, 7))
    bad = _images(1, 9)[0]
    bad[0, 6:10, 6:10] = 1.0
    errors = mean_abs_error(bad[None], fitted.restore(bad[None]))
    region_map = restoration_map(errors, fitted.foreground_, 3)
    lam = float(np.quantile(region_map, 0.95))  # the 13 largest of 256 pixels
    region_test.lam = lam
    res = region_test.test(bad)
    assert res.region_size > 0 and res.region.shape == bad.shape
    np.testing.assert_array_equal(res.region, region_map[0] > lam)  # the map's own region
    assert 0 <= res.p_value <= 1 and res.n_pieces >= 1


def test_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DisyreLocalizer(train_steps=1, verbose=False).fit(_images(4, 0) * 3)
    with pytest.raises(ValueError, match="inference"):
        DisyreLocalizer(inference="nope", verbose=False).fit(_images(4, 0))
    with pytest.raises(ValueError, match="severity steps"):
        DisyreLocalizer(severities=(100,), verbose=False).fit(_images(4, 0))
    with pytest.raises(ValueError, match="distinct"):
        DisyreLocalizer(severities=(5, 5), verbose=False).fit(_images(4, 0))
    with pytest.raises(ValueError, match="dag"):
        DisyreLocalizer(dag={"nonsense": 1}, verbose=False).fit(_images(4, 0))
    with pytest.raises(ValueError, match="not fitted|fit"):
        DisyreLocalizer().anomaly_map(_images(2, 0))


def test_load_localizer_names_what_it_found(tmp_path):
    with pytest.raises(ValueError, match="not a diffad checkpoint"):
        load_localizer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"class": "DTECategorical", "config": {}}))
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a DTECategorical, not an image localiser"):
        load_localizer(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a diffad checkpoint configuration"):
        load_localizer(tmp_path)


def test_patches_train_on_crops_and_restore_by_sliding_windows():
    loc = _fit(patch_size=8, train_steps=4)
    x = _images(3, 11)
    maps = loc.anomaly_map(x)
    assert maps.shape == (3, S, S) and np.all(np.isfinite(maps))
    # With f = 0 every window restores to its input: the blended restoration is X itself.
    torch.nn.init.zeros_(loc.model_.out.weight)
    torch.nn.init.zeros_(loc.model_.out.bias)
    for r in loc.restore(x):
        np.testing.assert_allclose(r, x, atol=1e-6)
    with pytest.raises(ValueError, match="whole images"):
        SelectiveTest(loc, 0.01, lam=0.1, device="cpu").test(x[0], x[1])
    with pytest.raises(ValueError, match="patch_size"):
        _fit(patch_size=S + 8, train_steps=2)
