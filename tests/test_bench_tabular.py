"""``diffad bench tabular``: runner, JSON output, summary table and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffad.bench.tabular import run_tabular, select_files, summarize
from diffad.cli import main
from diffad.tabular import DTECategorical

KEYS = {"dataset", "method", "seed", "roc_auc", "ap", "f1", "fit_s", "score_s"}


def _write_set(path: Path, seed: int, n: int = 200, d: int = 4) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.zeros(n, dtype=np.int64)
    y[-20:] = 1
    X[-20:] += 4.0  # easy anomalies: every detector should rank them first
    np.savez(path, X=X, y=y)


@pytest.fixture()
def data_dir(tmp_path):
    folder = tmp_path / "sets"
    folder.mkdir()
    _write_set(folder / "1_alpha.npz", 0)
    _write_set(folder / "MVTec-AD_a.npz", 1)
    _write_set(folder / "MVTec-AD_b.npz", 2)
    return folder


def test_cli_writes_json_and_table(data_dir, tmp_path, capsys):
    out = tmp_path / "res" / "r.json"
    argv = ["bench", "tabular", "--data-dir", str(data_dir), "--protocol", "semi"]
    argv += ["--methods", "knn,iforest", "--seeds", "0,1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert payload["command"].startswith("diffad bench tabular --data-dir")
    assert payload["machine"]["cores"] >= 1 and "torch" in payload["machine"]
    results = payload["results"]
    assert len(results) == 3 * 2 * 2
    assert all(KEYS <= set(r) for r in results)
    assert all(r["roc_auc"] > 0.95 for r in results)
    # KNN is deterministic and the semi split does not depend on the seed: reused, flagged.
    knn = [r for r in results if r["method"] == "knn" and r["dataset"] == "alpha"]
    assert knn[1].get("reused_from_seed") == 0 and knn[1]["roc_auc"] == knn[0]["roc_auc"]
    assert all("reused_from_seed" not in r for r in results if r["method"] == "iforest")
    rows = {(r["family"], r["method"]): r for r in payload["summary"]}
    mvtec = rows[("MVTec-AD", "knn")]
    assert mvtec["n_files"] == 2 and mvtec["published"] is not None
    assert mvtec["diff"] == pytest.approx(mvtec["roc_auc_mean"] - mvtec["published"])
    assert rows[("alpha", "knn")]["published"] is None
    table = capsys.readouterr().out
    assert "| MVTec-AD | 2 | knn | 2 |" in table and "| alpha | 1 | iforest | 2 |" in table


def test_summary_averages_family_files_per_seed():
    recs = [
        {"family": "F", "method": "knn", "seed": s, "file": f, "roc_auc": v, "protocol": "semi"}
        for s, f, v in [(0, "a", 0.8), (0, "b", 0.6), (1, "a", 0.9), (1, "b", 0.9)]
    ]
    (row,) = summarize(recs, published={"semi": {"F": {"KNN": (75.0, 1.0)}}})
    assert row["roc_auc_mean"] == pytest.approx(80.0)  # seeds: 70 and 90
    assert row["roc_auc_std"] == pytest.approx(10.0)
    assert row["diff"] == pytest.approx(5.0)


def test_dataset_selection(data_dir):
    assert [p.name for p in select_files(data_dir, ["mvtec-ad"])] == [
        "MVTec-AD_a.npz",
        "MVTec-AD_b.npz",
    ]
    assert [p.name for p in select_files(data_dir, ["alpha", "1_alpha"])] == ["1_alpha.npz"]
    with pytest.raises(ValueError, match="unknown data set 'beta'"):
        select_files(data_dir, ["beta"])


def test_cli_errors(data_dir, tmp_path, capsys):
    base = ["bench", "tabular", "--out", str(tmp_path / "x.json"), "--quiet", "--seeds", "0"]
    assert main([*base, "--data-dir", str(data_dir), "--datasets", "nope"]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err
    assert main([*base, "--data-dir", str(data_dir), "--methods", "knn,magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--data-dir", str(empty)]) == 2
    assert "no .npz files" in capsys.readouterr().err
    assert main([*base, "--data-dir", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([*base, "--data-dir", str(data_dir), "--seeds", "a,b"]) == 2


def test_dte_np_through_runner(data_dir):
    files = select_files(data_dir, ["alpha"])
    recs = run_tabular(files, "semi", ["dte-np"], [0], verbose=False)
    assert recs[0]["roc_auc"] > 0.95 and recs[0]["n_train"] == 90 and recs[0]["n_test"] == 110


def test_reproduces_published_knn_on_cardio(adbench):
    files = select_files(adbench / "Classical", ["cardio"])
    recs = run_tabular(files, "semi-paper", ["knn"], [0], verbose=False)
    (row,) = summarize(recs)
    assert row["published"] == 92.0
    assert round(row["roc_auc_mean"], 2) == 92.0  # PyOD KNN defaults, exact published split


def test_embedding_sets_work(adbench):
    files = select_files(adbench / "CV_by_ResNet18", ["MVTec-AD_toothbrush"])
    recs = run_tabular(files, "semi-paper", ["knn"], [0], verbose=False)
    assert recs[0]["family"] == "MVTec-AD" and recs[0]["n_features"] == 512
    assert recs[0]["n_train"] + recs[0]["n_test"] == 1000  # 102 rows oversampled


def test_dte_c_ds_is_dte_c_with_double_softmax_against_published_dte_c():
    from diffad.bench.methods import make_detector

    det = make_detector("dte-c-ds", seed=3, epochs=5)
    assert type(det) is DTECategorical
    assert det.double_softmax is True and det.random_state == 3 and det.epochs == 5
    assert make_detector("dte-c", seed=3).double_softmax is False
    recs = [
        {
            "family": "cardio",
            "method": m,
            "seed": 0,
            "file": "6_cardio.npz",
            "roc_auc": 0.9,
            "protocol": "semi-paper",
        }
        for m in ("dte-c", "dte-c-ds")
    ]
    published = {"semi": {"cardio": {"DTE-C": (87.0, 1.0)}}}
    rows = {r["method"]: r for r in summarize(recs, published=published)}
    assert rows["dte-c-ds"]["published"] == rows["dte-c"]["published"] == 87.0
