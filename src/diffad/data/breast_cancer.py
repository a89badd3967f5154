"""scikit-learn's breast-cancer data arranged as the ODDS ``wbc`` anomaly-detection task."""

from __future__ import annotations

import numpy as np

WBC_N_MALIGNANT = 21
"""ODDS wbc keeps all 357 benign rows and 21 malignant ones (5.6 % anomalies)."""


def load_wbc_like(random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Breast-cancer Wisconsin (diagnostic) as an anomaly-detection set.

    Benign tumours are the normal class (all 357 rows); a seeded random subset of 21 of the
    212 malignant rows are the anomalies, as in the ODDS ``wbc`` set (378 rows, 30
    features, 5.6 % anomalies). The data ship with scikit-learn, nothing is downloaded.

    Parameters
    ----------
    random_state : int
        Seed of the malignant subsample.

    Returns
    -------
    X : ndarray of shape (378, 30), float64
        Raw (unscaled) features: benign rows first, then the malignant ones.
    y : ndarray of shape (378,), int64
        0 = benign (normal), 1 = malignant (anomaly).
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    # scikit-learn codes malignant as 0 and benign as 1.
    benign = np.flatnonzero(data.target == 1)
    malignant = np.flatnonzero(data.target == 0)
    chosen = np.random.default_rng(random_state).choice(malignant, WBC_N_MALIGNANT, replace=False)
    rows = np.concatenate([benign, np.sort(chosen)])
    y = np.concatenate([np.zeros(benign.size), np.ones(WBC_N_MALIGNANT)]).astype(np.int64)
    return data.data[rows].astype(np.float64), y
