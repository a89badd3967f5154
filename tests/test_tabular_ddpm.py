"""DDPM baseline specifics: reverse-step count, reconstruction modes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffad.tabular import DDPMDetector

SMALL = {
    "width": 16,
    "hidden": 16,
    "n_blocks": 1,
    "time_dim": 8,
    "max_steps": 20,
    "batch_size": 32,
    "verbose": False,
}


@pytest.fixture(scope="module")
def X():
    torch.set_num_threads(1)
    return np.random.default_rng(0).normal(size=(100, 4))


@pytest.mark.parametrize("mode", ["published", "noised"])
def test_score_costs_n_reverse_network_calls(X, mode):
    det = DDPMDetector(n_reverse_steps=13, reconstruction=mode, **SMALL).fit(X)
    calls = []
    det.network_.register_forward_hook(lambda *a: calls.append(1))
    det.decision_function(X[:5])
    assert len(calls) == 13


def test_published_reconstruction_is_deterministic_reverse_mean(X):
    det = DDPMDetector(n_reverse_steps=3, **SMALL).fit(X)
    s = det.noise_schedule_
    x = torch.as_tensor(det._standardise(X[:4]), dtype=torch.float32)
    with torch.no_grad():
        x_t = x
        for t in (2, 1, 0):
            eps = det.network_(x_t, torch.full((4,), t))
            x_t = (x_t - s.betas[t] / np.sqrt(1 - s.alpha_bars[t]) * eps) / np.sqrt(s.alphas[t])
        expected = ((x - x_t) ** 2).mean(1).double().numpy()
    np.testing.assert_allclose(det.decision_function(X[:4]), expected, rtol=1e-5)


def test_noised_reconstruction_repeats_exactly_and_depends_on_seed(X):
    a = DDPMDetector(n_reverse_steps=10, reconstruction="noised", **SMALL).fit(X)
    np.testing.assert_array_equal(a.decision_function(X[:8]), a.decision_function(X[:8]))
    b = DDPMDetector(n_reverse_steps=10, reconstruction="noised", random_state=1, **SMALL)
    assert not np.array_equal(a.decision_function(X[:8]), b.fit(X).decision_function(X[:8]))


@pytest.mark.parametrize(
    "bad", [{"n_reverse_steps": 0}, {"n_reverse_steps": 11, "T": 10}, {"reconstruction": "ddim"}]
)
def test_bad_parameters(X, bad):
    with pytest.raises(ValueError):
        DDPMDetector(**{**SMALL, **bad}).fit(X)
