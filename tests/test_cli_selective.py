"""``diffad test`` end to end on a tiny trained, calibrated localiser."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffad.cli import main
from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.selective import REGION_TEST_FOLDER
from diffad.selective.dal import SelectiveTest

pytestmark = pytest.mark.usefixtures("torch_threads")


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
        score="l1",
    ).fit(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
    loc.save(root / "bare")
    healthy = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    loc.calibrate(healthy)
    loc.save(root / "model")
    SelectiveTest(loc).calibrate(healthy).save(root / "model" / REGION_TEST_FOLDER)
    x = rng.standard_normal((8, 8))
    x[2:5, 2:5] += 4.0
    np.save(root / "x.npy", x)
    np.save(root / "r.npy", rng.standard_normal((8, 8)))
    np.save(root / "small.npy", rng.standard_normal((4, 4)))
    np.save(root / "var.npy", np.ones((8, 8)))
    np.save(root / "empty.npy", np.zeros((0,)))
    np.save(root / "stack.npy", rng.standard_normal((3, 8, 8)))
    (root / "refs").mkdir()
    for i in range(3):
        np.save(root / "refs" / f"r{i}.npy", rng.standard_normal((8, 8)))
    (root / "fake.png").write_bytes(b"this is not a picture")
    return root


def _args(root, *extra, method="parametric"):
    return [
        "test", "--model", str(root / "model"), "--device", "cpu", "--quiet",
        "--method", method, *extra,
    ]  # fmt: skip


def test_defaults_from_the_calibrated_model_and_run_folder(files, capsys):
    out = files / "run"
    assert main(_args(files, "--images", str(files / "x.npy"), "--out", str(out))) == 0
    text = capsys.readouterr().out
    assert "healthy calibration check:" in text and f"report: {out}" in text
    doc = json.loads((out / "report.json").read_text())
    (entry,) = doc["images"]
    assert entry["name"] == "x.npy" and doc["kind"] == "test"
    assert entry["region_pixels"] > 0  # the bright patch is flagged
    assert 0 <= entry["p_selective"] <= 1 and 0 <= entry["p_naive"] <= 1
    assert entry["rejected"] == (entry["p_selective_bounds"][1] < 0.05)
    cal = doc["calibration"]
    assert cal["n_images"] == 2 and 0 <= cal["band"][0] <= cal["band"][1] <= 1  # 8 × 0.25
    arrays = np.load(out / "arrays.npz")
    assert arrays["regions"].shape == (1, 8, 8) and arrays["regions"].dtype == bool
    assert arrays["regions"].sum() == entry["region_pixels"]


def test_the_default_region_test_ranks_against_healthy_images(tmp_path, capsys):
    rng = np.random.default_rng(3)
    loc = DDPMLocalizer(
        unet={"channels": [4, 8]}, t_start=200, train_steps=5, batch_size=8, device="cpu",
        verbose=False, score="l1",
    ).fit(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))  # fmt: skip
    healthy = rng.standard_normal((120, 1, 8, 8)).astype(np.float32)
    loc.calibrate(healthy).save(tmp_path / "m")
    tester = SelectiveTest(loc).calibrate(healthy)
    tester.save(tmp_path / "m" / REGION_TEST_FOLDER)
    assert len(tester.null_z_["rank"]) >= 20  # enough for rank at alpha 0.05
    x = rng.standard_normal((8, 8))
    x[1:7, 1:7] += 6.0
    np.save(tmp_path / "x.npy", x)
    argv = ["test", "--model", str(tmp_path / "m"), "--images", str(tmp_path / "x.npy")]
    assert main(argv + ["--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "region test: rank: the most extreme flagged component among" in text
    assert "rank p" in text and "noise-model check" in text
    doc = json.loads((tmp_path / "run" / "report.json").read_text())
    (entry,) = doc["images"]
    label = "most extreme flagged component, ranked among healthy images (conformal)"
    assert entry["p_method"] == label == doc["region_test"]
    n_null = len(tester.null_z_["rank"])  # every healthy null image counts (0: no region)
    assert entry["p_selective"] == pytest.approx(1 / (n_null + 1))  # beyond every healthy one
    assert "noise_check" in doc["calibration"]
    # Fission against the same healthy images, one flag away (scaled null by default).
    assert main(argv + ["--device", "cpu", "--quiet", "--method", "fission"]) == 0
    assert "fission p" in capsys.readouterr().out
    # Too few healthy null images for a rank p-value below alpha: fission is chosen, saying why.
    few = SelectiveTest(loc).calibrate(healthy[:40])
    few.save(tmp_path / "m" / REGION_TEST_FOLDER)
    assert main(argv + ["--device", "cpu", "--quiet"]) == 0
    assert "region test: fission: only" in capsys.readouterr().out


def test_decision_prints_a_bracket_not_a_p_value(files, capsys):
    argv = _args(files, "--images", str(files / "x.npy"), "--termination", "decision")
    assert main(argv + ["--lam", "0.3", "--check", "0"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "selective p" not in line
    assert "p in [" in line and ("reject" in line or "no evidence" in line)


def test_stack_with_reference_folder_and_noise_file(files, capsys):
    argv = _args(files, "--images", str(files / "stack.npy"), "--npy-3d", "stack")
    argv += ["--references", str(files / "refs"), "--noise-var", str(files / "var.npy")]
    assert main(argv + ["--method", "naive", "--null", "gaussian", "--lam", "0.3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.rsplit(":", 1)[0] for ln in lines[:3]] == [f"stack.npy:{i}" for i in range(3)]
    assert not any("calibration check" in ln for ln in lines)  # a user reference: no check


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--images", "{x}", "--noise-var", "nope"], "--noise-var must be"),
        (["--images", "{x}", "--noise-var", "-1"], "--noise-var must be"),
        (["--images", "{small}"], "pixels"),
        (["--images", "{empty}"], "expected a 2-D image"),
        (["--images", "{stack}"], "--npy-3d"),
        (["--images", "{fake}"], "cannot read"),
        (["--images", "{root}/missing.npy"], "neither an existing file"),
        (["--images", "{x}", "--reference", "{small}"], "pixels"),
        (["--images", "{x}", "--alpha", "2"], "--alpha"),
    ],
)
def test_user_errors_are_one_line(files, capsys, extra, message):
    names = {k: str(files / f"{k}.npy") for k in ("x", "small", "empty", "stack")}
    names.update(fake=str(files / "fake.png"), root=str(files))
    assert main(_args(files, *[e.format(**names) for e in extra])) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffad: error:") and message in err and err.count("\n") == 1


def test_uncalibrated_model_needs_a_reference(files, capsys):
    argv = ["test", "--model", str(files / "bare"), "--images", str(files / "x.npy")]
    assert main(argv + ["--quiet", "--noise-var", "1"]) == 2
    assert "not calibrated" in capsys.readouterr().err


def test_results_stream_to_jsonl_and_a_rerun_resumes(files, capsys):
    out = files / "stream.jsonl"
    argv = _args(files, "--images", str(files / "stack.npy"), "--npy-3d", "stack")
    argv += ["--out", str(out), "--check", "0"]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all('"settings"' in ln for ln in lines)
    assert main(argv) == 0  # everything is done: nothing recomputed, the same answers
    second = capsys.readouterr().out.splitlines()
    assert second[0] == f"resuming: 3 result(s) already in {out}"
    assert second[1:] == first and len(out.read_text().splitlines()) == 3
    assert main(argv + ["--precision", "0.01"]) == 0  # other settings: computed afresh
    assert "resuming" not in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 6


def test_tile_test_from_the_command_line(files, capsys):
    out = files / "run_tile"
    argv = _args(files, "--images", str(files / "x.npy"), "--out", str(out), method="tile")
    assert main(argv + ["--tile-size", "4", "--termination", "decision"]) == 0
    text = capsys.readouterr().out
    assert "healthy calibration check:" in text
    doc = json.loads((out / "report.json").read_text())
    (entry,) = doc["images"]
    assert entry["p_method"] == "exact selective test of fixed tiles (Bonferroni over the grid)"
    assert entry["region_pixels"] == 16  # one 4 × 4 tile
    lo, hi = entry["p_selective_bounds"]
    assert 0.0 <= lo <= hi <= 1.0
    assert entry["p_selective"] is None  # a decision run reports its bracket, not a point
    assert main(argv + ["--tile-size", "0"]) == 2
    assert "tile_size must be an integer >= 1" in capsys.readouterr().err
