"""``diffad train-image`` and ``diffad localize`` end to end."""

import json

import numpy as np
import pytest
from PIL import Image

from diffad.cli import main

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder of 8-bit grey PNG pictures, 12 x 12 pixels."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(12):
        img = np.zeros((12, 12), np.uint8)
        img[2:10, 2:10] = (rng.random((8, 8)) * 155 + 100).astype(np.uint8)
        Image.fromarray(img).save(d / f"img{i:02d}.png")
    return d


@pytest.fixture(scope="module")
def model(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    argv = ["train-image", "--data", str(folder), "--size", "8", "--out", str(out)]
    argv += ["--steps", "4", "--batch-size", "3", "--channels", "4,8", "--quiet"]
    assert main(argv + ["--calibration-fraction", "0.34", "--method", "ddpm", "--score", "l1"]) == 0
    return out


def test_train_image_calibrates_and_stores_preprocessing(model):
    assert (model / "config.json").is_file() and (model / "weights.safetensors").is_file()
    summary = json.loads((model / "training.json").read_text())
    assert summary["images"] == 8 and summary["calibration_images"] == 4
    assert summary["image_shape"] == [1, 8, 8]
    config = json.loads((model / "config.json").read_text())["config"]
    pre = config["preprocessing"]
    assert pre["size"] == [8, 8] and pre["source_size"] == [12, 12] and pre["channels"] == 1
    assert 0 <= pre["low"] < pre["high"] <= 1  # PNG pixels are read in [0, 1]
    assert "calibration" in config
    assert (model / "region_test" / "config.json").is_file()  # the region test's calibration


def test_localize_writes_a_run_folder(model, folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["localize", "--model", str(model), "--images", str(folder), "--out", str(out)]
    assert main(argv + ["--quiet", "--overlays"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    doc = json.loads((out / "report.json").read_text())
    names = [e["name"] for e in doc["images"]]
    assert names == [f"img{i:02d}.png" for i in range(12)]
    for e in doc["images"]:
        assert 0 < e["p_conformal"] <= 1 and isinstance(e["bh_selected"], bool)
    arrays = np.load(out / "arrays.npz")
    assert arrays["maps"].shape == (12, 8, 8) and arrays["masks"].dtype == bool
    assert arrays["images"].shape == arrays["reconstructions"].shape == (12, 1, 8, 8)
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == [
        f"img{i:02d}.png" for i in range(12)
    ]
    # A map depends on its image only: a folder of 3 of the images gives their maps again.
    few = tmp_path / "few"
    few.mkdir()
    for name in ("img07.png", "img02.png", "img11.png"):
        (few / name).write_bytes((folder / name).read_bytes())
    again = tmp_path / "again"
    assert main(argv[:2] + [str(model), "--images", str(few), "--out", str(again), "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(again / "arrays.npz")["maps"], arrays["maps"][[2, 7, 11]])


def test_other_sizes_need_resize(model, tmp_path, capsys):
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(odd / "a.png")
    argv = ["localize", "--model", str(model), "--images", str(odd), "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "20x20" in err and "--resize" in err
    assert main(argv + ["--out", str(tmp_path / "o"), "--resize"]) == 0


def test_colour_pictures_keep_three_channels(tmp_path):
    d = tmp_path / "rgb"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(d / f"c{i}.png")
    out = tmp_path / "m"
    argv = ["train-image", "--data", str(d), "--size", "8", "--out", str(out), "--quiet"]
    assert main(argv + ["--steps", "2", "--channels", "4,8", "--calibration-fraction", "0.5"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["image_shape"] == [3, 8, 8] and config["preprocessing"]["channels"] == 3


def test_clean_errors(model, folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["localize", "--model", str(model), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(base + ["--images", str(empty)]) == 2
    assert "no image files" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    assert main(base + ["--images", str(broken)]) == 2
    assert "cannot read" in capsys.readouterr().err
    np.save(tmp_path / "vol.npy", np.zeros((3, 8, 8)))
    assert main(base + ["--images", str(tmp_path / "vol.npy")]) == 2
    assert "--npy-3d" in capsys.readouterr().err
    other = ["localize", "--model", str(folder), "--images", str(folder), "--out", str(tmp_path)]
    assert main(other) == 2
    assert "not a diffad checkpoint" in capsys.readouterr().err
    bad = ["train-image", "--data", str(folder), "--out", str(tmp_path / "m2")]
    assert main(bad + ["--channels", "4,x", "--quiet"]) == 2
    assert "--channels" in capsys.readouterr().err
    few = ["train-image", "--data", str(broken.parent / "few"), "--out", str(tmp_path / "m3")]
    (broken.parent / "few").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(broken.parent / "few" / f"{i}.png")
    assert main(few + ["--quiet"]) == 2
    assert "too few" in capsys.readouterr().err
