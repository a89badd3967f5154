"""``diffad train-image --method disyre`` then ``localize``, ``test`` and ``report`` unchanged."""

import json

import numpy as np
import pytest
from PIL import Image

from diffad.cli import main

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """16 grey PNG pictures, 16 x 16: a textured square on a black background."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(1)
    for i in range(16):
        img = np.zeros((16, 16), np.uint8)
        img[3:13, 3:13] = (rng.random((10, 10)) * 80 + 120).astype(np.uint8)
        Image.fromarray(img).save(d / f"img{i:02d}.png")
    return d


@pytest.fixture(scope="module")
def model(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    argv = ["train-image", "--method", "disyre", "--data", str(folder), "--size", "8"]
    argv += ["--out", str(out), "--steps", "6", "--batch-size", "4", "--channels", "4,8"]
    argv += ["--foreground-threshold", "0", "--severities", "99,49", "--quiet"]
    assert main(argv + ["--calibration-fraction", "0.5"]) == 0
    return out


def test_train_image_disyre_writes_a_calibrated_disyre_checkpoint(model):
    doc = json.loads((model / "config.json").read_text())
    assert doc["class"] == "DisyreLocalizer"
    params = doc["config"]["params"]
    assert params["severities"] == [99, 49] and params["foreground_threshold"] == 0
    assert "calibration" in doc["config"]


def test_localize_test_and_report_take_a_disyre_model(model, folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["localize", "--model", str(model), "--images", str(folder), "--out", str(run),
                 "--quiet"]) == 0  # fmt: skip
    doc = json.loads((run / "report.json").read_text())
    assert doc["model"]["class"] == "DisyreLocalizer" and doc["model"]["severities"] == [99, 49]
    assert len(doc["images"]) == 16
    assert all(0 < e["p_conformal"] <= 1 for e in doc["images"])
    out = tmp_path / "t.jsonl"
    argv = ["test", "--model", str(model), "--images", str(folder), "--out", str(out)]
    assert main(argv + ["--quiet", "--threads", "1"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 16
    assert sorted(r["key"] for r in records) == [f"img{i:02d}.png" for i in range(16)]
    p_values = [r["result"]["p_value"] for r in records]
    assert all(p is None or 0 <= p <= 1 for p in p_values)
    assert any(p is not None for p in p_values)
    capsys.readouterr()
    # A setting that fails every image fails once, before the batch (no healthy check either).
    assert main(argv + ["--quiet", "--t-start", "100", "--check", "0"]) == 2
    assert "--t-start do not apply to a DisyreLocalizer" in capsys.readouterr().err


def test_options_of_the_other_method_are_errors(folder, tmp_path, capsys):
    base = ["train-image", "--data", str(folder), "--size", "8", "--out", str(tmp_path / "m")]
    assert main(base + ["--method", "disyre", "--t-start", "100"]) == 2
    assert "--t-start do(es) not apply to --method disyre" in capsys.readouterr().err
    assert main(base + ["--method", "ddpm", "--severities", "99"]) == 2
    assert "--severities do(es) not apply to --method ddpm" in capsys.readouterr().err
    assert main(base + ["--method", "disyre", "--severities", "99,x"]) == 2
    assert "--severities must be comma-separated integers" in capsys.readouterr().err
