"""``diffad test`` end to end on a tiny trained localizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffad.cli import main
from diffad.image.ddpm_localizer import DDPMLocalizer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_sel")
    rng = np.random.default_rng(0)
    loc = DDPMLocalizer(
        unet={"channels": [4, 8]},
        t_start=460,
        train_steps=5,
        batch_size=8,
        device="cpu",
        verbose=False,
    ).fit(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
    loc.save(root / "model")
    x = rng.standard_normal((8, 8))
    x[2:5, 2:5] += 4.0
    np.save(root / "x.npy", x)
    np.save(root / "r.npy", rng.standard_normal((8, 8)))
    np.save(root / "small.npy", rng.standard_normal((4, 4)))
    np.save(root / "var.npy", np.ones((8, 8)))
    return root


def _args(root, *extra):
    return [
        "test",
        "--model", str(root / "model"),
        "--image", str(root / "x.npy"),
        "--reference", str(root / "r.npy"),
        "--device", "cpu",
        *extra,
    ]  # fmt: skip


def test_cli_writes_json_and_prints_p_values(files, capsys):
    out = files / "res.json"
    code = main(
        _args(files, "--noise-var", "1", "--method", "oc", "--lam", "0.5", "--out", str(out))
    )
    assert code == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["method"] == "oc" and doc["command"].startswith("diffad test")
    if doc["region_size"]:
        assert "oc p-value" in text and "naive p-value" in text
        assert 0.0 <= doc["p_value"] <= 1.0 and len(doc["intervals"]) == 1
    else:
        assert "no region selected" in text and doc["p_value"] is None
    assert np.asarray(doc["region"]).shape == (8, 8)


def test_cli_sigma_file_and_naive(files, capsys):
    code = main(
        _args(files, "--noise-var", str(files / "var.npy"), "--method", "naive", "--lam", "0.5")
    )
    assert code == 0
    assert "region size" in capsys.readouterr().out


def test_cli_errors_are_one_line(files, capsys):
    assert main(_args(files, "--noise-var", "nope")) == 2
    assert "--noise-var must be" in capsys.readouterr().err
    bad = _args(files, "--noise-var", "1")
    bad[bad.index("--reference") + 1] = str(files / "small.npy")
    assert main(bad) == 2
    assert "reference shape" in capsys.readouterr().err
    missing = _args(files, "--noise-var", "1")
    missing[missing.index("--image") + 1] = str(files / "missing.npy")
    assert main(missing) == 2
    assert "no such image" in capsys.readouterr().err
