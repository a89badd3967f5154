"""``diffad train-image``, ``diffad localize`` and ``diffad bench image`` end to end."""

import json

import numpy as np
import pytest

from diffad.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(6):
        img = np.zeros((12, 12), np.float32)
        img[2:10, 2:10] = rng.random((8, 8))
        np.save(d / f"img{i}.npy", img)
    return d


@pytest.fixture(scope="module")
def model(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    argv = ["train-image", "--data", str(folder), "--size", "8", "--out", str(out)]
    argv += ["--steps", "4", "--batch-size", "3", "--channels", "4,8", "--quiet"]
    assert main(argv) == 0
    return out


def test_train_image_writes_checkpoint(model):
    assert (model / "config.json").is_file() and (model / "weights.safetensors").is_file()
    summary = json.loads((model / "training.json").read_text())
    assert summary["images"] == 6 and summary["image_shape"] == [1, 8, 8]


def test_localize_writes_maps_and_overlays(model, folder, tmp_path):
    out = tmp_path / "maps"
    argv = ["localize", "--model", str(model), "--images", str(folder), "--out", str(out)]
    assert main(argv + ["--max-png", "2", "--postprocess", "--quiet"]) == 0
    maps = np.load(out / "maps.npy")
    assert maps.shape == (6, 8, 8) and np.all(np.isfinite(maps))
    assert len(list(out.glob("*.png"))) == 2
    assert (out / "names.txt").read_text().split() == [f"img{i}.npy" for i in range(6)]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["score"] == "ssim-ens" and len(scores["images"]) == 6
    # Same seed → identical maps; another seed → different maps.
    out2, out3 = tmp_path / "again", tmp_path / "seed1"
    assert main(argv[:-1] + [str(out2), "--postprocess", "--max-png", "0", "--quiet"]) == 0
    assert main(argv[:-1] + [str(out3), "--seed", "1", "--max-png", "0", "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(out2 / "maps.npy"), maps)
    assert not np.allclose(np.load(out3 / "maps.npy"), np.load(out2 / "maps.npy"))


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
    other = ["localize", "--model", str(folder), "--images", str(folder), "--out", str(tmp_path)]
    assert main(other) == 2
    assert "not a diffad checkpoint" in capsys.readouterr().err
    bad = ["train-image", "--data", str(folder), "--out", str(tmp_path / "m2")]
    assert main(bad + ["--channels", "4,x", "--quiet"]) == 2
    assert "--channels" in capsys.readouterr().err


def test_bench_image_is_registered():
    args = build_parser().parse_args(["bench", "image", "--size", "32", "--quick", "--out", "f"])
    assert args.quick and args.size == 32 and callable(args.func)
