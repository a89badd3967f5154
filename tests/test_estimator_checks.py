"""scikit-learn's estimator checks on every detector (PyOD conventions listed as expected).

PyOD's contract differs from scikit-learn's outlier detectors in one place: ``predict``
returns 0 (inlier) / 1 (outlier) where scikit-learn expects +1 / −1. The checks that test
exactly that are the only expected failures, each with its reason.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from diffad import (
    ConformalDetector,
    DDPMDetector,
    DTECategorical,
    DTEInverseGamma,
    DTENonParametric,
)

_PYOD_LABELS = "PyOD convention: predict returns 0/1 (inlier/outlier), not scikit-learn's +1/-1"
_FLOAT32_BATCHES = "float32 network: scores of a row may differ by ~1e-7 with the batch it is in"
_SMALL = {"epochs": 2, "max_steps": 4, "batch_size": 16, "verbose": False, "device": "cpu"}

_TWO_FEATURE_CHECKS = (
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_classifier_data_not_an_array",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_1feature",
)

DETECTORS = [
    DTENonParametric(k=3, device="cpu"),
    DTECategorical(hidden_sizes=(8,), **_SMALL),
    DTEInverseGamma(hidden_sizes=(8,), **_SMALL),
    DDPMDetector(width=8, hidden=8, n_blocks=1, time_dim=8, n_reverse_steps=3, **_SMALL),
    ConformalDetector(DTENonParametric(k=3, device="cpu"), random_state=0),
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks each detector is expected to fail, with the reason."""
    if isinstance(estimator, ConformalDetector):
        return {}
    out = {
        "check_outliers_fit_predict": _PYOD_LABELS,
        "check_outliers_train": _PYOD_LABELS,
    }
    if not isinstance(estimator, DTENonParametric):
        # The networks score in float32: a GEMM's rounding depends on the batch it is in,
        # so scores of a subset may differ in the 7th significant digit.
        out["check_methods_subset_invariance"] = _FLOAT32_BATCHES
    if isinstance(estimator, DTEInverseGamma):
        # These checks fit on 2-feature data; the inverse-Gamma shape d/2 − 1 must be
        # positive, so DTE-IG refuses d <= 2 with a clear ValueError.
        out.update(dict.fromkeys(_TWO_FEATURE_CHECKS, "DTE-IG needs at least 3 features"))
    return out


@pytest.mark.usefixtures("torch_threads")
@parametrize_with_checks(DETECTORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
