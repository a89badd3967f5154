"""``diffad demo`` (brain, quick settings) and ``diffad demo tabular`` run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffad.cli import main
from diffad.data.breast_cancer import load_wbc_like

IMAGE_KEYS = {
    "id", "has_lesion", "image_score", "p_conformal", "bh_selected", "region_pixels",
    "p_selective", "p_naive", "rejected",
}  # fmt: skip


def test_wbc_like_layout():
    X, y = load_wbc_like(0)
    assert X.shape == (378, 30) and int(y.sum()) == 21
    assert not y[:357].any() and y[357:].all()
    X1, _ = load_wbc_like(1)
    assert (X1[:357] == X[:357]).all() and not (X1[357:] == X[357:]).all()


def test_tabular_demo_runs(capsys):
    assert main(["demo", "tabular", "--epochs", "2", "--top", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "conformal p" in out and "Benjamini-Hochberg at q = 0.1" in out
    assert "DTE-C (diffad defaults): 2 epochs" in out
    assert out.count("| malignant |") + out.count("| benign |") == 4


def test_demo_rejects_bad_arguments(capsys):
    assert main(["demo", "tabular", "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["demo", "tabular", "--q", "1.5"]) == 2
    assert main(["demo", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


@pytest.fixture(scope="module")
def brain_demo(tmp_path_factory):
    pytest.importorskip("nilearn", reason="the demo trains on MNI152 from nilearn")
    if not Path("/usr/share/mricron/templates/ch2bet.nii.gz").is_file():
        pytest.skip("Colin27 is absent: apt-get install mricron-data")
    root = tmp_path_factory.mktemp("demo")
    argv = ["demo", "--quick", "--quiet", "--threads", "2"]
    argv += ["--out", str(root / "out"), "--cache", str(root / "cache")]
    assert main(argv) == 0
    return root, argv


def test_quick_brain_demo_writes_the_report(brain_demo, capsys):
    root, _ = brain_demo
    report = json.loads((root / "out" / "report.json").read_text())
    assert report["synthetic_lesions"] is True and report["kind"] == "demo"
    images = report["images"]
    assert len(images) == 6 and all(IMAGE_KEYS <= set(e) for e in images)
    assert sum(e["has_lesion"] for e in images) == 3
    assert all("SYNTHETIC" in e["name"] for e in images if e["has_lesion"])
    assert all(0 < e["p_conformal"] <= 1 and isinstance(e["bh_selected"], bool) for e in images)
    tested = [e for e in images if e["region_pixels"]]
    assert len(tested) >= 3  # at the fixed seed, regions are flagged in at least half
    for e in tested:
        assert 0 <= e["p_selective"] <= 1 and 0 <= e["p_naive"] <= 1
        lo, hi = e["p_selective_bounds"]
        assert lo <= e["p_selective"] <= hi and hi - lo <= 0.01 + 1e-12
        assert e["rejected"] == (hi < report["alpha"])
    for e in images:
        assert e in tested or (e["p_selective"] is None and e["rejected"] is False)
    cal = report["calibration"]
    assert {"alpha", "n_healthy", "healthy_rejection_rate"} <= set(cal)
    assert cal["n_images"] == 6 and 0 <= cal["healthy_rejection_rate"] <= 1
    html = (root / "out" / "report.html").read_text()
    assert "SYNTHETIC" in html and html.count('<article class="image-card') == 6


def test_rerun_uses_the_cache(brain_demo, capsys):
    root, argv = brain_demo
    before = json.loads((root / "out" / "report.json").read_text())["images"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "loaded from cache" in out and out.strip().splitlines()[-1].startswith("report: ")
    after = json.loads((root / "out" / "report.json").read_text())["images"]
    assert [e["p_selective"] for e in after] == [e["p_selective"] for e in before]


def test_quick_brain_demo_with_disyre(brain_demo, tmp_path):
    root, _ = brain_demo
    argv = ["demo", "--quick", "--quiet", "--threads", "2", "--method", "disyre"]
    argv += ["--out", str(tmp_path / "out"), "--cache", str(root / "cache")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["class"] == "DisyreLocalizer"
    assert report["settings"]["method"] == "disyre"
    assert len(report["images"]) == 6
    assert all(0 < e["p_conformal"] <= 1 for e in report["images"])
    # Its own cache entry, next to the DDPM's.
    assert len(list((root / "cache").glob("brain-demo-*"))) == 2
