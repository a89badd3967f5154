"""Run the authors' engine si4onnx 0.1.13 on exported reconstructions (runs in ITS venv).

This script is executed by ``benchmarks/si_vs_si4onnx.py`` with the python of the private
venv made by ``benchmarks/si4onnx_setup.sh`` (numpy < 2, si4onnx, sicore); it must not import
diffad. Input: a JSON job file; output: a JSON result file.

Job file::

    {"lam": 0.8, "var": 1.0, "filter_size": 3, "threads": 1,
     "modes": [{"name": "default", "inference_mode": "parametric"},
               {"name": "exhaustive", "inference_mode": "exhaustive"}],
     "images": [{"onnx": "img0.onnx", "x": "img0_x.npy", "ref": "img0_ref.npy"}, ...]}

How si4onnx expresses the DAL-Test (same group's engine, its ``ReferenceMeanDiff`` hypothesis):
the ONNX graph outputs D(X); ``post_process=[InputDiff(), AverageFilter(3), Abs()]`` gives
E = |K * (D(X) - X)| (InputDiff is output - input; AverageFilter is a depth-wise conv with
weights 1/9 and zero padding 1); ``threshold=λ`` selects M = {E > λ} (strict); the test is
η = (1_M; -1_M)/|M| on Y = (X; X') with Σ = var·I (a float var means var·I in sicore).
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np
import onnx
import torch
from si4onnx import Abs as SiAbs
from si4onnx import AverageFilter, InputDiff, ReferenceMeanDiff
from si4onnx import load as si_load
from si4onnx.hypothesis import NoHypothesisError


def run_one(spec: dict, job: dict, mode: dict) -> dict:
    """One selective p-value with si4onnx; the model is loaded fresh so that no memoised
    state from another run can help (each timing is a cold, complete p-value)."""
    model = onnx.load(spec["onnx"])
    x = torch.from_numpy(np.load(spec["x"]).astype(np.float64))
    ref = torch.from_numpy(np.load(spec["ref"]).astype(np.float64))
    hyp = ReferenceMeanDiff(
        threshold=float(job["lam"]),
        post_process=[InputDiff(), AverageFilter(int(job["filter_size"])), SiAbs()],
    )
    if job.get("threshold_float64"):
        # si4onnx stores λ as torch.tensor(λ).double(), i.e. float32(λ) widened
        # (0.8 -> 0.800000011920929); this option sets the exact float64 λ instead.
        hyp.thrshold = torch.tensor(float(job["lam"]), dtype=torch.float64)
    si_model = si_load(model, hyp)
    if spec.get("recon_out"):
        # What si4onnx sees: its own float64 interpretation of the graph (not timed).
        np.save(spec["recon_out"], si_model.forward(x).numpy())
    kwargs = {k: v for k, v in mode.items() if k != "name"}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = si_model.inference((x, ref), var=float(job["var"]), **kwargs)
    except NoHypothesisError:
        return {"mode": mode["name"], "selected": False, "seconds": time.perf_counter() - t0}
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    # sicore reports stat and intervals on the scale of T = ηᵀY; divide by sqrt(ηᵀΣη) to get
    # the z scale the p-value is computed on (and that diffad reports).
    scale = float(res.null_rv.kwds.get("scale", 1.0))
    return {
        "mode": mode["name"],
        "selected": True,
        "p_value": float(res.p_value),
        "inf_p": float(res.inf_p),
        "sup_p": float(res.sup_p),
        "stat_T": float(res.stat),
        "z": float(res.stat) / scale,
        "stat_scale": scale,
        "region_size": int(np.asarray(res.roi).sum()),
        "roi": np.asarray(res.roi).astype(int).tolist(),
        "truncated_intervals_z": (np.asarray(res.truncated_intervals) / scale).tolist(),
        "searched_intervals_z": (np.asarray(res.searched_intervals) / scale).tolist(),
        "threshold_used": float(hyp.thrshold),
        "search_count": int(res.search_count),
        "detect_count": int(res.detect_count),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def main() -> int:
    job_path, out_path = sys.argv[1], sys.argv[2]
    with open(job_path) as fh:
        job = json.load(fh)
    torch.set_num_threads(int(job.get("threads", 1)))
    results = []
    for i, spec in enumerate(job["images"]):
        # The driver sends one image per job; "first_image" keeps the logged index global.
        index = int(job.get("first_image", 0)) + i
        per = {"image": index, "runs": []}
        for mode in job["modes"]:
            try:
                per["runs"].append(run_one(spec, job, mode))
            except Exception as err:  # report, keep going with the other images
                per["runs"].append(
                    {"mode": mode["name"], "error": repr(err), "trace": traceback.format_exc()}
                )
            last = per["runs"][-1]
            print(
                f"si4onnx image {index} {mode['name']}: p={last.get('p_value')} "
                f"pieces={last.get('search_count')} {last.get('seconds', 0):.1f}s",
                file=sys.stderr,
                flush=True,
            )
            # Written after every run so that a partial comparison survives a time limit.
            with open(out_path, "w") as fh:
                json.dump(
                    {
                        "results": results + [per],
                        "versions": versions(),
                    },
                    fh,
                )
        results.append(per)
    return 0


def versions() -> dict:
    """Versions of the engine's stack, for the record."""
    import importlib.metadata as md

    return {p: md.version(p) for p in ("si4onnx", "sicore", "numpy", "torch", "onnx", "scipy")}


if __name__ == "__main__":
    sys.exit(main())
