"""``diffad demo`` runs end to end (few epochs) and reports p-values and BH selections."""

from __future__ import annotations

import pytest

from diffad.cli import main
from diffad.data.breast_cancer import load_wbc_like


def test_wbc_like_layout():
    X, y = load_wbc_like(0)
    assert X.shape == (378, 30) and int(y.sum()) == 21
    assert not y[:357].any() and y[357:].all()
    X1, _ = load_wbc_like(1)
    assert (X1[:357] == X[:357]).all() and not (X1[357:] == X[357:]).all()


def test_demo_runs(capsys):
    pytest.importorskip("diffad.tabular")
    assert main(["demo", "--epochs", "2", "--top", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "conformal p" in out and "Benjamini-Hochberg at q = 0.1" in out
    assert "DTE-C (diffad defaults): 2 epochs" in out
    assert out.count("| malignant |") + out.count("| benign |") == 4


def test_demo_rejects_bad_arguments(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["demo", "--q", "1.5"]) == 2
