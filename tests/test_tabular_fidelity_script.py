"""``benchmarks/tabular_fidelity.py summarize``: variant runs stay apart from default runs."""

from __future__ import annotations

import json

import pytest
from conftest import load_benchmark


@pytest.fixture()
def fidelity(tmp_path, monkeypatch):
    module = load_benchmark("tabular_fidelity")
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def _record(auc: float) -> dict:
    return {
        "dataset": "cardio",
        "family": "cardio",
        "file": "6_cardio.npz",
        "method": "dte-c",
        "seed": 0,
        "protocol": "semi-paper",
        "roc_auc": auc,
    }


def test_variant_kept_apart_from_defaults(fidelity, tmp_path):
    # "dtec-ds" sorts after "dtec-defaults": without the variant key it would override it.
    for tag, auc, variant in [("dtec-defaults", 0.90, None), ("dtec-ds", 0.50, "double softmax")]:
        payload = {"variant": variant, "results": [_record(auc)]}
        (tmp_path / f"tabular_fidelity_semi-paper_{tag}.json").write_text(json.dumps(payload))
    assert fidelity.main(["summarize"]) == 0
    summary = json.loads((tmp_path / "tabular_fidelity_summary.json").read_text())
    per_method = summary["protocols"]["semi-paper"]
    assert per_method["dte-c"]["mean_ours"] == pytest.approx(90.0)
    assert per_method["dte-c|double softmax"]["mean_ours"] == pytest.approx(50.0)
    table = (tmp_path / "tabular_fidelity.md").read_text()
    assert "| DTE-C (double softmax) | 0 | 1 |" in table
    assert "| cardio | 90.0 vs 87.3 | 50.0 vs 87.3 |" in table
