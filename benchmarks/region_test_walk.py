"""The modules one image visits from ``diffad test`` to its p-value, and the calls that climb.

Trains a tiny DDPM on noise (8 × 8), calibrates it and its region test, saves it, then runs
``diffad test --model M --images x.npy`` under a profiler hook that records, in order of first
call, every diffad module whose functions run (module imports are not counted), and every
call from a module of a lower layer into one of a higher layer (:mod:`diffad._layers`).
Writes the JSON given by ``--out``.

    python benchmarks/region_test_walk.py --out benchmarks/results/region_test_walk.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from diffad._layers import LAYERS, subpackage
from diffad.cli import main as cli_main
from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.provenance import write_result
from diffad.selective import REGION_TEST_FOLDER
from diffad.selective.dal import SelectiveTest


def _module_of(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith("diffad") and name != __name__ else None


def walk(model: Path, image: Path) -> dict:
    """Run ``diffad test`` on one image and record the modules and upward calls."""
    order: list[str] = []
    climbs: set[tuple[str, str]] = set()

    def hook(frame, event, _arg):
        if event != "call" or frame.f_code.co_name == "<module>":  # calls, not imports
            return
        callee = _module_of(frame)
        if callee is None:
            return
        if callee not in order:
            order.append(callee)
        caller = _module_of(frame.f_back) if frame.f_back is not None else None
        if caller and caller != callee:
            if LAYERS[subpackage(caller)] < LAYERS[subpackage(callee)]:
                climbs.add((caller, callee))

    argv = ["test", "--model", str(model), "--images", str(image), "--device", "cpu", "--quiet"]
    sys.setprofile(hook)
    try:
        code = cli_main(argv + ["--check", "0"])
    finally:
        sys.setprofile(None)
    packages = sorted({subpackage(m) for m in order}, key=lambda p: (LAYERS[p], p))
    return {
        "exit_code": code,
        "modules_in_order": order,
        "n_modules": len(order),
        "packages": packages,
        "upward_calls": sorted(list(pair) for pair in climbs),
        "n_upward_calls": len(climbs),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    loc = DDPMLocalizer(
        unet={"channels": [4, 8]}, train_steps=5, batch_size=8, t_start=200, ddim_steps=2,
        device="cpu", verbose=False, score="l1",
    ).fit(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))  # fmt: skip
    healthy = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    x = rng.standard_normal((8, 8))
    x[2:5, 2:5] += 4.0
    with tempfile.TemporaryDirectory() as tmp:
        model, image = Path(tmp) / "model", Path(tmp) / "x.npy"
        loc.calibrate(healthy).save(model)
        SelectiveTest(loc).calibrate(healthy).save(model / REGION_TEST_FOLDER)
        np.save(image, x)
        result = walk(model, image)
    write_result(args.out, result, command="python benchmarks/region_test_walk.py " + " ".join(
        argv if argv is not None else sys.argv[1:]))
    print(f"{result['n_modules']} modules in {len(result['packages'])} packages "
          f"({', '.join(result['packages'])}); upward calls: {result['n_upward_calls']}")
    for caller, callee in result["upward_calls"]:
        print(f"  {caller} -> {callee}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
