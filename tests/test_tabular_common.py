"""Contract tests shared by every tabular detector (PyOD API, validation, checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from diffad.tabular import DDPMDetector, DTECategorical, DTEInverseGamma, DTENonParametric

FAST = {"epochs": 30, "max_steps": 150, "batch_size": 32, "lr": 1e-3, "verbose": False}


def make(cls, **kw):
    """A small, fast instance of each detector."""
    if cls is DTENonParametric:
        return DTENonParametric(k=3, **kw)
    if cls is DDPMDetector:
        return DDPMDetector(
            width=32, hidden=32, n_blocks=1, time_dim=16, n_reverse_steps=10, **FAST, **kw
        )
    if cls is DTEInverseGamma:
        # DTE-IG needs more training than DTE-C to rank shifted rows reliably.
        return cls(
            hidden_sizes=(32, 32), **{**FAST, "epochs": 100, "lr": 3e-3, "max_steps": 300}, **kw
        )
    return cls(hidden_sizes=(32, 32), **FAST, **kw)


ALL = [DTENonParametric, DTECategorical, DTEInverseGamma, DDPMDetector]
NEURAL = [DTECategorical, DTEInverseGamma, DDPMDetector]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny networks run fastest single-threaded; restore the caller's setting afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    X_test = np.vstack([rng.normal(size=(40, 4)), rng.normal(size=(10, 4)) + 4.0])
    return X, X_test


@pytest.fixture(scope="module")
def fitted(toy):
    """One fitted instance per class, shared by the read-only tests."""
    X, _ = toy
    return {cls: make(cls, contamination=0.1).fit(X) for cls in ALL}


@pytest.mark.parametrize("cls", ALL)
def test_pyod_contract(cls, toy, fitted):
    X, X_test = toy
    det = make(cls, contamination=0.1)
    if cls in NEURAL:
        det.set_params(max_steps=5)
    assert det.fit(X) is det
    det = fitted[cls]
    assert det.decision_scores_.shape == (200,)
    assert np.all(np.isfinite(det.decision_scores_))
    assert set(np.unique(det.labels_)) <= {0, 1}
    assert det.labels_.sum() == pytest.approx(20, abs=2)
    scores = det.decision_function(X_test)
    assert scores.shape == (50,) and np.all(np.isfinite(scores))
    pred = det.predict(X_test)
    np.testing.assert_array_equal(pred, (scores > det.threshold_).astype(int))
    proba = det.predict_proba(X_test)
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("cls", ALL)
def test_obvious_outliers_score_higher(cls, toy, fitted):
    _, X_test = toy
    scores = fitted[cls].decision_function(X_test)
    # Rows shifted by 4 sd in every feature outrank almost all normal rows (ROC-AUC >= 0.95).
    auc = roc_auc_score(np.r_[np.zeros(40), np.ones(10)], scores)
    assert auc >= 0.95


@pytest.mark.parametrize("cls", NEURAL)
def test_seeded_fit_is_deterministic_and_leaves_global_rng_alone(cls, toy):
    X, X_test = toy
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = make(cls, random_state=3).set_params(max_steps=20).fit(X).decision_function(X_test)
    assert torch.equal(before, torch.get_rng_state())
    b = make(cls, random_state=3).set_params(max_steps=20).fit(X).decision_function(X_test)
    c = make(cls, random_state=4).set_params(max_steps=20).fit(X).decision_function(X_test)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("cls", ALL)
def test_save_load_round_trip(cls, toy, fitted, tmp_path):
    _, X_test = toy
    det = fitted[cls]
    det.save(tmp_path / "ckpt")
    loaded = cls.load(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.decision_function(X_test), det.decision_function(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), det.predict(X_test))
    np.testing.assert_array_equal(loaded.decision_scores_, det.decision_scores_)
    assert loaded.threshold_ == det.threshold_
    assert loaded.get_params().keys() == det.get_params().keys()
    np.testing.assert_allclose(loaded.predict_proba(X_test), det.predict_proba(X_test))


@pytest.mark.parametrize("cls", ALL)
def test_loading_into_another_class_fails(cls, fitted, tmp_path):
    fitted[cls].save(tmp_path / "ckpt")
    other = DTECategorical if cls is not DTECategorical else DTENonParametric
    with pytest.raises(ValueError, match="written by"):
        other.load(tmp_path / "ckpt")


def test_save_before_fit_fails(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        DTENonParametric().save(tmp_path / "x")


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_rejected(cls, toy, fitted, bad):
    X, _ = toy
    X_bad = X.copy()
    X_bad[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        make(cls).fit(X_bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted[cls].decision_function(X_bad[:5])


@pytest.mark.parametrize("cls", ALL)
def test_shape_errors(cls, toy, fitted):
    X, _ = toy
    with pytest.raises(ValueError, match="2-D"):
        make(cls).fit(X[:, 0])
    with pytest.raises(ValueError, match="not fitted"):
        make(cls).decision_function(X)
    det = fitted[cls]
    with pytest.raises(ValueError, match="3 features but .* fitted with 4"):
        det.decision_function(X[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        det.decision_function(X[0])
    with pytest.raises(ValueError, match="rows"):
        det.decision_function(X[:0])


@pytest.mark.parametrize("cls", ALL)
def test_constant_column_is_kept_with_unit_scale(cls, toy):
    X, _ = toy
    Xc = np.column_stack([X, np.full(len(X), 5.0)])
    det = make(cls).fit(Xc)
    assert det.scaler_scale_[-1] == 1.0 and det.scaler_mean_[-1] == 5.0
    assert np.all(np.isfinite(det.decision_scores_))
    row = np.append(np.zeros(4), 5.0)[None, :]
    broken = np.append(np.zeros(4), 25.0)[None, :]
    scores = det.decision_function(np.vstack([row, broken]))
    assert np.all(np.isfinite(scores))
    if cls in (DTENonParametric, DTECategorical):
        # Breaking the constant is anomalous: the deviation is not divided away.
        assert scores[1] > scores[0]


def test_contamination_validated():
    with pytest.raises(ValueError, match="contamination"):
        DTENonParametric(contamination=0.9)


@pytest.mark.parametrize("cls", NEURAL)
def test_bad_training_params(cls, toy):
    X, _ = toy
    with pytest.raises(ValueError, match="epochs"):
        make(cls).set_params(epochs=0).fit(X)
    with pytest.raises(ValueError, match="max_steps"):
        make(cls).set_params(max_steps=0).fit(X)
    with pytest.raises(ValueError, match="lr"):
        make(cls).set_params(lr=-1.0).fit(X)


@pytest.mark.parametrize("cls", NEURAL)
def test_max_steps_caps_training_and_paper_settings_do_not(cls, toy):
    X, _ = toy
    det = make(cls).set_params(max_steps=7).fit(X)
    assert det.n_steps_ == 7
    full = make(cls).set_params(epochs=2, max_steps=None).fit(X)
    per_epoch = 200 // 32 if cls is DDPMDetector else int(np.ceil(200 / 32))
    assert full.n_steps_ == 2 * per_epoch and len(full.loss_history_) == 2
    paper = cls.paper_settings()
    assert (paper.epochs, paper.batch_size, paper.lr, paper.max_steps) == (400, 64, 1e-4, None)


@pytest.mark.parametrize("cls", ALL)
def test_sklearn_clone_keeps_parameters(cls):
    from sklearn.base import clone

    det = make(cls, contamination=0.2)
    copy = clone(det)
    assert copy.get_params() == det.get_params() and not hasattr(copy, "decision_scores_")


def test_progress_bar_only_when_verbose(toy, capsys):
    X, _ = toy
    DTECategorical(hidden_sizes=(8,), max_steps=12, epochs=2, verbose=True).fit(X)
    err = capsys.readouterr().err
    assert "DTECategorical" in err and "loss=" in err
    DTECategorical(hidden_sizes=(8,), max_steps=12, epochs=2, verbose=False).fit(X)
    assert capsys.readouterr().err == ""
