"""DTE-C specifics: score definition, binning, published network shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diffad.tabular import DTECategorical


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    X = np.random.default_rng(0).normal(size=(120, 5))
    det = DTECategorical(hidden_sizes=(16, 16), max_steps=30, batch_size=32, verbose=False)
    return det.fit(X), X


def test_score_is_posterior_mean_bin(fitted):
    det, X = fitted
    Z = torch.as_tensor(det._standardise(X[:10]), dtype=torch.float32)
    with torch.no_grad():
        probs = torch.softmax(det.network_(Z), dim=1).double().numpy()
    np.testing.assert_allclose(det.decision_function(X[:10]), probs @ np.arange(7), rtol=1e-6)
    scores = det.decision_function(X)
    assert np.all((scores >= 0) & (scores <= 6))


def test_published_network_shape():
    det = DTECategorical()
    net = det._build_network(9)
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (9, 256),
        (256, 512),
        (512, 256),
        (256, 7),
    ]
    kinds = [type(m).__name__ for m in net.net]
    # Dropout follows the 2nd and 3rd hidden layers only.
    assert kinds == [
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert all(m.p == 0.5 for m in net.modules() if isinstance(m, nn.Dropout))


def test_loss_targets_are_floor_bins(monkeypatch):
    det = DTECategorical(T=400, num_bins=7)
    det.noise_schedule_ = det._noise_schedule()
    net = det._build_network(3)
    seen = {}

    def fake_ce(logits, target):
        seen["target"] = target
        return logits.sum() * 0

    monkeypatch.setattr("diffad.tabular.dte_c.F.cross_entropy", fake_ce)
    gen = torch.Generator().manual_seed(0)
    det._loss(net, torch.zeros(2000, 3), gen)
    gen = torch.Generator().manual_seed(0)
    t = torch.randint(0, 400, (2000,), generator=gen)
    torch.testing.assert_close(seen["target"], (t * 7) // 400)
    assert seen["target"].max() == 6 and seen["target"].min() == 0


@pytest.mark.parametrize("bad", [{"num_bins": 1}, {"T": 3, "num_bins": 7}])
def test_bad_parameters(bad):
    with pytest.raises(ValueError):
        DTECategorical(verbose=False, max_steps=1, **bad).fit(
            np.random.default_rng(0).normal(size=(20, 3))
        )


def test_double_softmax_option_trains_on_probabilities(monkeypatch):
    det = DTECategorical(double_softmax=True)
    det.noise_schedule_ = det._noise_schedule()
    net = det._build_network(3).eval()
    seen = {}

    def fake_ce(inputs, target):
        seen["inputs"] = inputs
        return inputs.sum() * 0

    monkeypatch.setattr("diffad.tabular.dte_c.F.cross_entropy", fake_ce)
    det._loss(net, torch.zeros(50, 3), torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen["inputs"].sum(dim=1), torch.ones(50))
    assert torch.all(seen["inputs"] >= 0)
