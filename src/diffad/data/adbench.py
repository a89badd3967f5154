"""ADBench ``.npz`` data sets and the DTE paper's evaluation protocols.

An ADBench file holds two arrays, ``X`` (n x d features) and ``y`` (n labels, 0 = normal,
1 = anomaly). This module reads such files, maps file names to the names used by the
published DTE results (``6_cardio`` -> ``cardio``, ``MVTec-AD_bottle`` -> ``MVTec-AD``), and
builds train/test splits under three protocols:

``semi-paper``
    The published one-class split, reproduced exactly (read off the authors' public code):
    sets with fewer than 1000 rows are first oversampled with replacement to 1000 rows
    (seeded, so duplicates of test rows end up in the training part); sets over 50 000 rows
    are subsampled to 50 000 (seeded); train = the first 50 % (Python ``round``) of the normal
    rows in the resulting order; test = the remaining normals followed by all anomalies.
    Features are standardised with a scaler fit on the training part; missing values are
    replaced after scaling by the column mean of the training part (training rows) and, as
    the published code does, of the test part (test rows).
``semi``
    The honest variant: identical, except that nothing is oversampled (so no copy of a test
    row sits in the training part) and missing test values are filled with the *training*
    column means. Rows that are repeated in the source file itself (e.g. 234 of breastw's
    683 rows) are kept: they are genuine repeated observations of the published data set,
    and dropping them would change the task and its anomaly rate. Only the protocol's
    artificial duplication is removed.
``unsup``
    Train on a bootstrap resample of the whole (contaminated) set, test on the whole set;
    no oversampling (the published numbers match a run without it); the scaler is fit on
    the whole set, as published. The random stream reproduces the published code's
    (subsample, then a permutation of the anomaly indices, then the bootstrap draw).

All randomness uses ``numpy.random.RandomState(seed)`` because the published code used the
legacy global generator; this reproduces its exact row selections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROTOCOLS = ("semi-paper", "semi", "unsup")
"""Supported protocol names."""

MIN_ROWS = 1000
"""``semi-paper`` oversamples sets with fewer rows than this to exactly this many rows."""

MAX_ROWS = 50_000
"""Every protocol subsamples sets with more rows than this to exactly this many rows."""

_INDEX_PREFIX = re.compile(r"^\d+_")


@dataclass
class Split:
    """A train/test split of one data set under one protocol and seed.

    Attributes
    ----------
    X_train, X_test : ndarray of shape (n_train, d), (n_test, d)
        Standardised features (float64, no NaN).
    y_train, y_test : ndarray of shape (n_train,), (n_test,)
        Labels (0 = normal, 1 = anomaly). ``y_train`` is all zeros for the semi protocols
        and the (unused by detectors) contaminated labels for ``unsup``.
    protocol : str
    seed : int
    info : dict
        What the protocol did (``n_source``, ``oversampled``, ``subsampled``).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    protocol: str
    seed: int
    info: dict = field(default_factory=dict)


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an ADBench ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        File with arrays ``X`` (n x d) and ``y`` (n, values in {0, 1}).

    Returns
    -------
    X : ndarray of shape (n, d), float64
        Features; NaN is allowed (the protocols fill it), infinity is not.
    y : ndarray of shape (n,), int64

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        On missing keys, wrong shapes, infinite values, or labels other than 0/1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ADBench file not found: {path} (get the data sets from the ADBench project's "
            "datasets/ folder; diffad never downloads data)"
        )
    # allow_pickle=False: a data file must never execute code.
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("X", "y") if k not in data.files]
        if missing:
            raise ValueError(f"{path.name}: missing array(s) {missing}; found {data.files}")
        X = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"])
    if X.ndim != 2:
        raise ValueError(f"{path.name}: X must be 2-D (n x d), got shape {X.shape}")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{path.name}: y has shape {y.shape} but X has {X.shape[0]} rows")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{path.name}: empty data set (X has shape {X.shape})")
    if np.isinf(X).any():
        raise ValueError(f"{path.name}: X contains infinite values")
    labels = np.unique(y)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{path.name}: y must be binary 0/1, found values {labels[:10]}")
    return X, y.astype(np.int64)


def list_datasets(data_dir: str | Path) -> list[Path]:
    """Every ``*.npz`` file in a folder, sorted by ADBench index then name.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If it holds no ``.npz`` file.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    files = [p for p in data_dir.iterdir() if p.suffix == ".npz" and p.is_file()]
    if not files:
        raise ValueError(f"no .npz files in {data_dir}")
    return sorted(files, key=_sort_key)


def _sort_key(path: Path) -> tuple[int, str]:
    match = re.match(r"^(\d+)_", path.stem)
    return (int(match.group(1)) if match else 10**9, path.stem.lower())


def dataset_name(path: str | Path) -> str:
    """The file's data set name without ADBench's numeric prefix (``6_cardio`` -> ``cardio``).

    The case of the file name is kept (``15_Hepatitis`` -> ``Hepatitis``); the ``.npz``
    suffix is removed when present.
    """
    stem = Path(path).name
    if stem.endswith(".npz"):
        stem = stem[: -len(".npz")]
    return _INDEX_PREFIX.sub("", stem)


def family_name(path: str | Path, known: list[str] | None = None) -> str:
    """The published-results name of a file: its family for multi-file sets.

    ``6_cardio`` -> ``cardio``, ``22_magic.gamma`` -> ``magic.gamma``,
    ``MVTec-AD_bottle`` -> ``MVTec-AD``, ``CIFAR10_0`` -> ``CIFAR10``, ``20news_3`` -> ``20news``.
    ADBench's classical names contain no underscore, so whatever follows the first
    underscore (after the numeric prefix) names a member of a family.

    Parameters
    ----------
    path : str or Path
        File path or stem.
    known : list of str, optional
        Names used by the published results; matched case-insensitively and returned in
        their spelling. Without a match (or without ``known``) the lower-cased name is
        returned.
    """
    base = dataset_name(path).split("_", 1)[0]
    for name in known or []:
        if name.lower() == base.lower():
            return name
    return base.lower()


def make_split(
    X: np.ndarray,
    y: np.ndarray,
    protocol: str,
    seed: int,
    *,
    min_rows: int = MIN_ROWS,
    max_rows: int = MAX_ROWS,
) -> Split:
    """Build the train/test split of one protocol (see the module docstring).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Raw features (NaN allowed).
    y : ndarray of shape (n,)
        Binary labels.
    protocol : {"semi-paper", "semi", "unsup"}
    seed : int
        Seed of the row selections (oversampling, subsampling, bootstrap).
    min_rows, max_rows : int
        Oversampling target (``semi-paper`` only) and subsampling cap.

    Returns
    -------
    Split
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) and y (n,); got {X.shape} and {y.shape}")
    n_source = len(y)
    info = {"n_source": n_source, "oversampled": False, "subsampled": False}
    rng = np.random.RandomState(seed)
    if protocol == "semi-paper" and len(y) < min_rows:
        idx = rng.choice(len(y), min_rows, replace=True)
        X, y = X[idx], y[idx]
        info["oversampled"] = True
    if len(y) > max_rows:
        # The published code re-seeds before subsampling.
        rng = np.random.RandomState(seed)
        idx = rng.choice(len(y), max_rows, replace=False)
        X, y = X[idx], y[idx]
        info["subsampled"] = True
    if protocol == "unsup":
        return _unsup_split(X, y, rng, seed, info)
    normal = np.flatnonzero(y == 0)
    anomaly = np.flatnonzero(y == 1)
    if len(normal) < 2:
        raise ValueError(f"need at least 2 normal rows for a one-class split, got {len(normal)}")
    if len(anomaly) == 0:
        raise ValueError("the data set has no anomalies; ROC-AUC is undefined")
    # Python's round (banker's rounding), as in the published code.
    n_train = round(0.5 * len(normal))
    train = normal[:n_train]
    test = np.concatenate([normal[n_train:], anomaly])
    from sklearn.preprocessing import StandardScaler  # imported on use: the CLI starts fast

    scaler = StandardScaler().fit(X[train])
    X_train = scaler.transform(X[train])
    X_test = scaler.transform(X[test])
    train_mean = _nan_mean(X_train)
    X_train = _fill_nan(X_train, train_mean)
    # semi-paper fills test gaps with the test part's own column means (published code);
    # the honest protocol uses only training statistics.
    X_test = _fill_nan(X_test, _nan_mean(X_test) if protocol == "semi-paper" else train_mean)
    info.update(n_train=len(train), n_test=len(test))
    return Split(X_train, np.zeros(len(train), np.int64), X_test, y[test], protocol, seed, info)


def _unsup_split(
    X: np.ndarray, y: np.ndarray, rng: np.random.RandomState, seed: int, info: dict
) -> Split:
    if len(np.unique(y)) < 2:
        raise ValueError("unsup protocol needs both normal and anomalous rows")
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    X = scaler.transform(X)
    X = _fill_nan(X, _nan_mean(X))
    # The published data generator draws a (discarded) permutation of the anomaly indices
    # before the bootstrap; drawing it keeps the bootstrap rows identical to theirs.
    rng.permutation(int((y == 1).sum()))
    boot = rng.choice(len(y), len(y), replace=True)
    info.update(n_train=len(boot), n_test=len(y))
    return Split(X[boot], y[boot], X, y, "unsup", seed, info)


def _nan_mean(X: np.ndarray) -> np.ndarray:
    if not np.isnan(X).any():
        return np.zeros(X.shape[1])  # unused
    with np.errstate(all="ignore"):
        counts = (~np.isnan(X)).sum(axis=0)
        sums = np.nansum(X, axis=0)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return mean


def _fill_nan(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    mask = np.isnan(X)
    if mask.any():
        X = X.copy()
        X[mask] = np.take(mean, np.nonzero(mask)[1])
    return X


def load_split(path: str | Path, protocol: str, seed: int) -> Split:
    """Load an ADBench file and build its split (``load_npz`` then ``make_split``)."""
    X, y = load_npz(path)
    return make_split(X, y, protocol, seed)
