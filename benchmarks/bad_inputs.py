"""What a user sees for bad input: every case through the CLI (exit code, stderr) and the API.

Trains a tiny calibrated model on 8-bit PNG pictures in a temporary folder, then feeds the
image commands and the Python API the inputs users get wrong. Writes one record per case:
the call, the exit code (CLI) or exception type (API), and the message.

    python benchmarks/bad_inputs.py --out benchmarks/results/bad_inputs.json
    python benchmarks/bad_inputs.py --method disyre --out benchmarks/results/bad_inputs_disyre.json

With ``--method disyre`` the model is a DISYRE localiser and the DISYRE-only mistakes are
added (options of the other method, severity steps out of range, DDPM settings for a DISYRE
region test, images outside [0, 1], a patch larger than the images).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from diffad.cli import main as cli
from diffad.provenance import machine_info, write_json


def make_files(root: Path, method: str = "ddpm") -> dict[str, str]:
    """Good pictures, a model, and the bad files."""
    rng = np.random.default_rng(0)
    good = root / "good"
    good.mkdir()
    for i in range(16):
        img = (rng.random((16, 16)) * 155 + 100).astype(np.uint8)
        Image.fromarray(img).save(good / f"img{i:02d}.png")
    files = {"good": str(good), "model": str(root / "model"), "root": str(root)}
    (root / "fake.png").write_bytes(b"this is not a picture")
    np.save(root / "empty.npy", np.zeros((0,)))
    np.save(root / "stack.npy", rng.random((5, 16, 16)))
    np.save(root / "nan.npy", np.full((16, 16), np.nan))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "big.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "colour.png")
    (root / "notes.txt").write_text("hello")
    (root / "emptydir").mkdir()
    for name in ("fake.png", "empty.npy", "stack.npy", "nan.npy", "big.png", "colour.png"):
        files[name.split(".")[0]] = str(root / name)
    files["emptydir"] = str(root / "emptydir")
    files["notes"] = str(root / "notes.txt")
    argv = ["train-image", "--data", str(good), "--size", "16", "--out", files["model"]]
    argv += ["--steps", "3", "--channels", "4,8", "--quiet", "--method", method]
    assert cli(argv + (["--score", "l1"] if method == "ddpm" else [])) == 0
    return files


CLI_CASES = [
    ("test", "non-image .png", ["--images", "{fake}"]),
    ("test", "empty array", ["--images", "{empty}"]),
    ("test", "3-D .npy without --npy-3d", ["--images", "{stack}"]),
    ("test", "NaN pixels", ["--images", "{nan}"]),
    ("test", "size mismatch", ["--images", "{big}"]),
    ("test", "colour image, grey model", ["--images", "{colour}"]),
    ("test", "bad σ (text)", ["--images", "{good}", "--noise-var", "abc"]),
    ("test", "bad σ (negative)", ["--images", "{good}", "--noise-var", "-1"]),
    ("test", "missing file", ["--images", "{root}/missing.png"]),
    ("test", "unsupported file type", ["--images", "{notes}"]),
    ("test", "alpha out of range", ["--images", "{good}", "--alpha", "1.5"]),
    ("localize", "empty folder", ["--images", "{emptydir}"]),
    ("localize", "not a checkpoint", ["--images", "{good}", "--model-override", "{good}"]),
    ("localize", "q out of range", ["--images", "{good}", "--q", "1.5"]),
    ("localize", "unknown option", ["--images", "{good}", "--colour", "red"]),
    ("train-image", "bad channels", ["--data", "{good}", "--channels", "4,x"]),
    ("train-image", "too few images to calibrate", ["--data", "{colour}"]),
    ("report", "not a run folder", ["{good}"]),
]
_DISYRE = ["--data", "{good}", "--method", "disyre"]
DISYRE_CLI_CASES = [
    ("test", "DDPM setting on a DISYRE model", ["--images", "{good}", "--t-start", "100"]),
    ("train-image", "DDPM option with --method disyre", [*_DISYRE, "--t-start", "100"]),
    ("train-image", "severity step out of range", [*_DISYRE, "--severities", "99,100"]),
    ("train-image", "unknown inference", [*_DISYRE, "--inference", "fast"]),
    ("train-image", "patch larger than the images", [*_DISYRE, "--size", "16", "--patch-size",
                                                     "32"]),  # fmt: skip
]


def run_cli(command: str, extra: list[str], files: dict[str, str], out: Path) -> dict[str, Any]:
    extra = [e.format(**files) for e in extra]
    if command == "report":
        argv = ["report", *extra]
    elif command == "train-image":
        argv = ["train-image", *extra, "--out", str(out / "m"), "--quiet"]
    else:
        model = files["model"]
        if "--model-override" in extra:
            i = extra.index("--model-override")
            model = extra[i + 1]
            extra = extra[:i] + extra[i + 2 :]
        argv = [command, "--model", model, *extra, "--quiet", "--check", "0"]
        argv = argv if command == "test" else [a for a in argv if a not in ("--check", "0")]
        if command == "localize" or "--out" not in argv:
            argv += ["--out", str(out / command)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code
    return {"argv": "diffad " + " ".join(argv), "exit": code, "stderr": err.getvalue().strip()}


def api_cases(files: dict[str, str], method: str = "ddpm") -> list[dict[str, Any]]:
    from diffad import DDPMLocalizer, DisyreLocalizer
    from diffad.image.localizers import load_localizer
    from diffad.selective import REGION_TEST_FOLDER
    from diffad.selective.dal import SelectiveTest

    loc = load_localizer(files["model"], device="cpu")
    loc.set_params(verbose=False)

    def stored_test(**params: Any) -> SelectiveTest:
        """The region test calibrated by train-image, with ``params`` changed."""
        return SelectiveTest.load(Path(files["model"]) / REGION_TEST_FOLDER, loc, **params)

    cases = [
        (
            "decision_function on an empty array",
            lambda: loc.decision_function(np.zeros((0, 16, 16))),
        ),
        ("decision_function with NaN", lambda: loc.decision_function(np.full((1, 16, 16), np.nan))),
        ("decision_function, wrong size", lambda: loc.decision_function(np.zeros((1, 20, 20)))),
        (
            "decision_function, colour on grey",
            lambda: loc.decision_function([np.zeros((16, 16, 3))]),
        ),
        (
            "decision_function, 5-D array",
            lambda: loc.decision_function(np.zeros((1, 1, 1, 16, 16))),
        ),
        ("calibrate with 2 images", lambda: loc.calibrate(np.zeros((2, 16, 16)))),
        ("predict_masks level 90", lambda: loc.predict_masks(np.zeros((1, 16, 16)), level=90)),
        (
            "SelectiveTest, negative noise_var",
            lambda: stored_test(noise_var=-1.0).test(np.zeros((16, 16))),
        ),
        (
            "SelectiveTest, unknown termination",
            lambda: stored_test(termination="soon").test(np.zeros((16, 16))),
        ),
        ("predict before fit", lambda: DDPMLocalizer().predict(np.zeros((1, 16, 16)))),
    ]
    if method == "disyre":
        cases += [
            (
                "DISYRE fit on images outside [0, 1]",
                lambda: DisyreLocalizer(verbose=False).fit(np.full((4, 16, 16), 3.0)),
            ),
            (
                "DISYRE patch larger than the images",
                lambda: DisyreLocalizer(patch_size=32, verbose=False).fit(np.zeros((4, 16, 16))),
            ),
            (
                # The DDPM's map settings are set on the localiser (not on SelectiveTest).
                "t_start set on a DISYRE model",
                lambda: copy.deepcopy(loc).set_params(t_start=100),
            ),
        ]
    out = []
    for name, call in cases:
        try:
            call()
            out.append({"case": name, "error": None, "message": "no error"})
        except Exception as err:  # noqa: BLE001 - recording what the user sees
            out.append({"case": name, "error": type(err).__name__, "message": str(err)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=("ddpm", "disyre"), default="ddpm", help="model kind")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_files(root, args.method)
        cli_rows = []
        cases = CLI_CASES + (DISYRE_CLI_CASES if args.method == "disyre" else [])
        for command, case, extra in cases:
            row = run_cli(command, extra, files, root / "out")
            cli_rows.append({"command": command, "case": case, **row})
        api_rows = api_cases(files, args.method)
    for row in cli_rows:  # the temporary paths mean nothing after the run
        row["argv"] = row["argv"].replace(str(root), "TMP")
        row["stderr"] = row["stderr"].replace(str(root), "TMP")
    write_json(
        args.out,
        {
            "command": "python benchmarks/bad_inputs.py "
            + ("" if args.method == "ddpm" else "--method disyre ")
            + "--out "
            + args.out,
            "machine": machine_info(),
            "cli": cli_rows,
            "api": api_rows,
        },
    )
    bad = [r for r in cli_rows if r["exit"] != 2 or r["stderr"].count("\n")]
    print(f"{len(cli_rows)} CLI cases, {len(bad)} not one line + exit 2; {len(api_rows)} API cases")
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
