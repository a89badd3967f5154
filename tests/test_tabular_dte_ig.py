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
    net = det._build_network(4).eval()  # no dropout, so both passes agree
    x = torch.randn(64, 4)
    loss = det._loss(net, x, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    t = torch.randint(0, 50, (64,), generator=gen)
    noise = torch.randn(x.shape, generator=gen)
    var = det._var[t]
    beta = net(x + var.sqrt()[:, None] * noise).squeeze(1) ** 2
    expected = -(1.0 * torch.log(beta + 1e-5) - beta / var).mean()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("d", [1, 2])
def test_two_or_fewer_features_rejected(d):
    X = np.random.default_rng(0).normal(size=(30, d))
    with pytest.raises(ValueError, match="at least 3 features"):
        DTEInverseGamma(verbose=False).fit(X)


def test_default_schedule_is_batch_256_capped_at_8000_steps():
    det = DTEInverseGamma()
    assert (det.epochs, det.batch_size, det.lr, det.max_steps) == (400, 256, 4e-4, 8000)
    paper = DTEInverseGamma.paper_settings()
    assert (paper.epochs, paper.batch_size, paper.lr, paper.max_steps) == (400, 64, 1e-4, None)
