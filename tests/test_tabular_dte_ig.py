"""DTE-IG specifics: the corrected score and the shape constraint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffad.tabular import DTEInverseGamma


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    X = np.random.default_rng(0).normal(size=(120, 6))
    det = DTEInverseGamma(hidden_sizes=(16, 16), max_steps=30, batch_size=32, verbose=False)
    return det.fit(X), X


def test_score_is_posterior_mode_not_signed_output(fitted):
    det, X = fitted
    Z = torch.as_tensor(det._standardise(X), dtype=torch.float32)
    with torch.no_grad():
        s = det.network_(Z).squeeze(1).double().numpy()
    alpha = 6 / 2 - 1
    assert det.alpha_ == alpha
    np.testing.assert_allclose(det.decision_function(X), s**2 / (alpha + 1), rtol=1e-5)
    assert np.all(det.decision_function(X) >= 0)


def test_loss_matches_inverse_gamma_formula():
    det = DTEInverseGamma(T=50)
    det.noise_schedule_ = det._noise_schedule()
    net = det._build_network(4).eval()  # no dropout, so both passes agree
    x = torch.randn(64, 4)
    loss = det._loss(net, x, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    t = torch.randint(0, 50, (64,), generator=gen)
    noise = torch.randn(x.shape, generator=gen)
    # Independent schedule: linear betas 1e-4 .. 1e-2, variance 1 − ∏(1 − β).
    var64 = 1.0 - np.cumprod(1.0 - np.linspace(1e-4, 1e-2, 50))[t.numpy()]
    var = torch.as_tensor(var64, dtype=torch.float32)
    sd = torch.as_tensor(np.sqrt(var64), dtype=torch.float32)
    beta = net(x + sd[:, None] * noise).squeeze(1) ** 2
    expected = -(1.0 * torch.log(beta + 1e-5) - beta / var).mean()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("d", [1, 2])
def test_two_or_fewer_features_rejected(d):
    X = np.random.default_rng(0).normal(size=(30, d))
    with pytest.raises(ValueError, match="at least 3 features"):
        DTEInverseGamma(verbose=False).fit(X)


def test_auto_schedule_is_paper_while_affordable_then_fast():
    det = DTEInverseGamma()
    paper = {"epochs": 400, "batch_size": 64, "lr": 1e-4, "max_steps": None}
    fast = {"epochs": 400, "batch_size": 256, "lr": 4e-4, "max_steps": 8000}
    # 400 epochs of ceil(3200 / 64) = 50 steps is exactly the 20 000-step budget.
    assert det._training_schedule(3200) == paper and det.training_schedule_name(3200) == "paper"
    assert det._training_schedule(3201) == fast and det.training_schedule_name(3201) == "fast"
    assert DTEInverseGamma(training_schedule="fast")._training_schedule(100) == fast
    assert DTEInverseGamma(training_schedule="paper")._training_schedule(50_000) == paper
    assert DTEInverseGamma.paper_settings()._training_schedule(50_000) == paper


def test_explicit_values_override_the_schedule():
    det = DTEInverseGamma(training_schedule="fast", lr=1e-3, max_steps=None)
    assert det._training_schedule(50_000) == {
        "epochs": 400,
        "batch_size": 256,
        "lr": 1e-3,
        "max_steps": None,
    }


def test_fit_records_the_schedule_it_trained_with():
    X = np.random.default_rng(0).normal(size=(100, 4))
    det = DTEInverseGamma(hidden_sizes=(8, 8), epochs=2, verbose=False).fit(X)
    assert det.training_schedule_ == {"epochs": 2, "batch_size": 64, "lr": 1e-4, "max_steps": None}
    assert det.n_train_steps_ == 2 * 2  # ceil(100 / 64) = 2 steps an epoch


def test_unknown_schedule_rejected():
    X = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(ValueError, match="schedule must be"):
        DTEInverseGamma(training_schedule="slow", verbose=False).fit(X)


def test_softplus_link_scores_softplus_of_output_and_bad_link_rejected():
    X = np.random.default_rng(0).normal(size=(120, 6))
    det = DTEInverseGamma(
        hidden_sizes=(16, 16), beta_link="softplus", max_steps=30, batch_size=32, verbose=False
    ).fit(X)
    Z = torch.as_tensor(det._standardise(X), dtype=torch.float32)
    with torch.no_grad():
        s = det.network_(Z).squeeze(1).double().numpy()
    np.testing.assert_allclose(det.decision_function(X), np.logaddexp(0.0, s) / 3.0, rtol=1e-5)
    with pytest.raises(ValueError, match="beta_link"):
        DTEInverseGamma(beta_link="exp", verbose=False).fit(X)
