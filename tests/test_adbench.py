"""ADBench loading, name mapping and the three evaluation protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from diffad.data.adbench import (
    dataset_name,
    family_name,
    list_datasets,
    load_npz,
    load_split,
    make_split,
)

# The real files come from the ``adbench`` fixture (tests/conftest.py): the shared copy.
SHAPES = {"cardio": ((1831, 21), 176), "hepatitis": ((80, 19), 13), "toothbrush": ((102, 512), 30)}


def _toy(n: int = 120, d: int = 3, n_anom: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 0] = np.arange(n)  # a row id, to track rows through the protocol
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(n, n_anom, replace=False)] = 1
    return X, y


def _save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


# -- loading -----------------------------------------------------------------------------


def test_load_npz_roundtrip(tmp_path):
    X, y = _toy()
    Xl, yl = load_npz(_save(tmp_path / "3_toy.npz", X=X.astype(np.float32), y=y.astype(np.int32)))
    assert Xl.dtype == np.float64 and yl.dtype == np.int64
    np.testing.assert_allclose(Xl, X.astype(np.float32))
    np.testing.assert_array_equal(yl, y)


def test_load_npz_errors(tmp_path):
    X, y = _toy()
    with pytest.raises(FileNotFoundError, match="ADBench"):
        load_npz(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="missing"):
        load_npz(_save(tmp_path / "a.npz", X=X))
    with pytest.raises(ValueError, match="rows"):
        load_npz(_save(tmp_path / "b.npz", X=X, y=y[:-1]))
    with pytest.raises(ValueError, match="binary"):
        load_npz(_save(tmp_path / "c.npz", X=X, y=y + 1))
    with pytest.raises(ValueError, match="2-D"):
        load_npz(_save(tmp_path / "d.npz", X=X[:, 0], y=y))
    X_inf = X.copy()
    X_inf[0, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        load_npz(_save(tmp_path / "e.npz", X=X_inf, y=y))


def test_list_datasets_reads_every_npz_sorted(tmp_path):
    X, y = _toy()
    for name in ("10_b", "2_a", "CIFAR10_0", "zz"):
        _save(tmp_path / f"{name}.npz", X=X, y=y)
    (tmp_path / "notes.txt").write_text("not data")
    assert [p.stem for p in list_datasets(tmp_path)] == ["2_a", "10_b", "CIFAR10_0", "zz"]
    with pytest.raises(FileNotFoundError):
        list_datasets(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .npz"):
        list_datasets(empty)


@pytest.mark.parametrize(
    ("stem", "name", "family"),
    [
        ("6_cardio.npz", "cardio", "cardio"),
        ("22_magic.gamma", "magic.gamma", "magic.gamma"),
        ("31_satimage-2", "satimage-2", "satimage-2"),
        ("15_Hepatitis", "Hepatitis", "hepatitis"),
        ("MVTec-AD_metal_nut", "MVTec-AD_metal_nut", "MVTec-AD"),
        ("CIFAR10_0", "CIFAR10_0", "CIFAR10"),
        ("20news_3", "20news_3", "20news"),
        ("1_ALOI", "ALOI", "aloi"),
    ],
)
def test_names_map_to_published_keys(stem, name, family):
    from diffad.bench.published import PUBLISHED_ROCAUC

    known = list(PUBLISHED_ROCAUC["semi"])
    assert dataset_name(stem) == name
    assert family_name(stem, known) == family
    assert family in known


# -- protocols ---------------------------------------------------------------------------


def test_semi_paper_oversamples_before_split_exactly():
    X, y = _toy(n=120)
    split = make_split(X, y, "semi-paper", seed=3)
    # Independent statement of the published rule.
    idx = np.random.RandomState(3).choice(120, 1000, replace=True)
    Xo, yo = X[idx], y[idx]
    normal, anomaly = np.flatnonzero(yo == 0), np.flatnonzero(yo == 1)
    n_train = round(0.5 * len(normal))
    scaler = StandardScaler().fit(Xo[normal[:n_train]])
    np.testing.assert_allclose(split.X_train, scaler.transform(Xo[normal[:n_train]]))
    test = np.concatenate([normal[n_train:], anomaly])
    np.testing.assert_allclose(split.X_test, scaler.transform(Xo[test]))
    np.testing.assert_array_equal(split.y_test, yo[test])
    assert split.info["oversampled"] and len(split.X_train) + len(split.X_test) == 1000
    assert not split.y_train.any()
    # The published protocol leaks: some training rows are copies of test rows.
    shared = np.intersect1d(split.X_train[:, 0], split.X_test[:, 0])
    assert shared.size > 0


def test_semi_has_no_artificial_duplicates_and_keeps_file_order():
    X, y = _toy(n=120)
    split = make_split(X, y, "semi", seed=0)
    normal = np.flatnonzero(y == 0)
    n_train = round(0.5 * len(normal))
    assert len(split.X_train) == n_train and len(split.X_test) == 120 - n_train
    assert not split.info["oversampled"]
    # Row ids recovered through the (affine, increasing) scaling of column 0.
    scaler = StandardScaler().fit(X[normal[:n_train]])
    ids_train = scaler.inverse_transform(split.X_train)[:, 0].round().astype(int)
    ids_test = scaler.inverse_transform(split.X_test)[:, 0].round().astype(int)
    np.testing.assert_array_equal(ids_train, normal[:n_train])
    assert np.intersect1d(ids_train, ids_test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([ids_train, ids_test])), np.arange(120))
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0, atol=1e-12)
    # The split does not depend on the seed (file order), as published.
    np.testing.assert_array_equal(make_split(X, y, "semi", seed=4).X_test, split.X_test)


def test_subsampling_above_max_rows_is_seeded():
    X, y = _toy(n=300, n_anom=30)
    a = make_split(X, y, "semi", seed=1, max_rows=200)
    b = make_split(X, y, "semi", seed=1, max_rows=200)
    c = make_split(X, y, "semi", seed=2, max_rows=200)
    assert a.info["subsampled"] and len(a.X_train) + len(a.X_test) == 200
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert a.X_test.shape != c.X_test.shape or not np.array_equal(a.X_test, c.X_test)


def test_nan_filling_train_vs_test_statistics():
    X, y = _toy(n=200, n_anom=10)
    X[np.flatnonzero(y == 0)[-1], 1] = np.nan  # a test normal (second half of the normals)
    X[np.flatnonzero(y == 0)[0], 2] = np.nan  # a training normal
    for protocol in ("semi", "semi-paper"):
        split = make_split(X, y, protocol, seed=0, min_rows=10)
        assert np.isfinite(split.X_train).all() and np.isfinite(split.X_test).all()
    honest = make_split(X, y, "semi", seed=0)
    # Training statistics only: the filled value is the training mean (0 after scaling).
    normal = np.flatnonzero(y == 0)
    row = len(normal) - round(0.5 * len(normal)) - 1
    assert honest.X_test[row, 1] == pytest.approx(0.0, abs=1e-12)
    paper = make_split(X, y, "semi-paper", seed=0, min_rows=10)
    assert paper.X_test[row, 1] == pytest.approx(np.nanmean(paper.X_test[:, 1]), abs=1e-12)


def test_unsup_bootstrap_of_the_whole_set():
    X, y = _toy(n=150, n_anom=15)
    split = make_split(X, y, "unsup", seed=0)
    whole = StandardScaler().fit_transform(X)
    np.testing.assert_allclose(split.X_test, whole)
    np.testing.assert_array_equal(split.y_test, y)
    # Reproduces the published random stream: an anomaly permutation, then the bootstrap.
    rng = np.random.RandomState(0)
    rng.permutation(15)
    boot = rng.choice(150, 150, replace=True)
    np.testing.assert_allclose(split.X_train, whole[boot])
    np.testing.assert_array_equal(split.y_train, y[boot])
    assert not split.info["oversampled"]
    assert not np.array_equal(make_split(X, y, "unsup", seed=1).X_train, split.X_train)


def test_protocol_errors():
    X, y = _toy()
    with pytest.raises(ValueError, match="unknown protocol"):
        make_split(X, y, "semi-supervised", 0)
    with pytest.raises(ValueError, match="no anomalies"):
        make_split(X, np.zeros_like(y), "semi", 0)
    with pytest.raises(ValueError):
        make_split(X, y[:-1], "semi", 0)


# -- real ADBench files ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_real_files_load_with_their_published_sizes(adbench, name):
    from conftest import ADBENCH_FILES

    path = adbench / ADBENCH_FILES[name]
    shape, n_anomalies = SHAPES[name]
    X, y = load_npz(path)
    assert X.shape == shape and y.shape == (shape[0],)
    assert X.dtype == np.float64 and y.dtype == np.int64  # Hepatitis stores int32 labels
    assert int(y.sum()) == n_anomalies and set(np.unique(y)) == {0, 1}
    assert np.isfinite(X).all()
    with np.load(path) as raw:  # the values are the file's, only widened
        np.testing.assert_array_equal(X, raw["X"].astype(np.float64))
        np.testing.assert_array_equal(y, raw["y"].reshape(-1))


def test_real_folders_list_by_adbench_index_and_map_to_published_names(adbench):
    from diffad.bench.published import PUBLISHED_ROCAUC

    files = list_datasets(adbench / "Classical")
    assert [p.name for p in files] == ["6_cardio.npz", "15_Hepatitis.npz"]  # 6 before 15
    known = list(PUBLISHED_ROCAUC["semi"])
    assert [family_name(p, known) for p in files] == ["cardio", "hepatitis"]
    (emb,) = list_datasets(adbench / "CV_by_ResNet18")
    assert dataset_name(emb) == "MVTec-AD_toothbrush" and family_name(emb, known) == "MVTec-AD"


def test_real_cardio_split_sizes(adbench):
    cardio = adbench / "Classical" / "6_cardio.npz"
    split = load_split(cardio, "semi-paper", 0)
    assert split.X_train.shape == (round(0.5 * 1655), 21)
    assert split.X_test.shape == (1831 - round(0.5 * 1655), 21)
    assert split.y_test.sum() == 176
    assert not split.info["oversampled"]  # over 1000 rows: the split is the file order
    np.testing.assert_array_equal(load_split(cardio, "semi-paper", 4).X_test, split.X_test)


def test_real_small_set_under_each_protocol(adbench):
    hepatitis = adbench / "Classical" / "15_Hepatitis.npz"
    X, y = load_npz(hepatitis)
    normal = np.flatnonzero(y == 0)  # 67 normals, 13 anomalies
    semi = load_split(hepatitis, "semi", 0)
    assert semi.X_train.shape == (34, 19) and semi.X_test.shape == (46, 19)
    assert semi.y_test.sum() == 13 and not semi.info["oversampled"]
    scaler = StandardScaler().fit(X[normal[:34]])
    np.testing.assert_allclose(semi.X_train, scaler.transform(X[normal[:34]]))
    paper = load_split(hepatitis, "semi-paper", 0)
    assert paper.info["oversampled"] and len(paper.X_train) + len(paper.X_test) == 1000
    np.testing.assert_allclose(paper.X_train.mean(axis=0), 0, atol=1e-12)
    unsup = load_split(hepatitis, "unsup", 0)
    np.testing.assert_allclose(unsup.X_test, StandardScaler().fit_transform(X))
    np.testing.assert_array_equal(unsup.y_test, y)
