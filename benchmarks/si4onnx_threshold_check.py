"""Explain the ~1e-7 p-value differences between diffad and si4onnx: si4onnx's float32 λ.

si4onnx 0.1.13 stores the threshold as ``torch.tensor(threshold).double()``
(``PresetHypothesis.__init__``): ``torch.tensor(0.8)`` is float32, so si4onnx selects with
λ = float32(0.8) = 0.800000011920929, not 0.8. The truncation-set ends (points where some
E_i crosses λ) move by 1.2e-8 / |dE_i/dz|, i.e. ~1e-7, and p by about as much.

For images of a ``si_vs_si4onnx.py`` result file this script
1. decides, for each end where the two engines' sets differ, which engine is right, by a
   direct float64 evaluation of the selection M(z) (diffad's ``reconstruct`` in float64,
   3x3 mean filter, threshold 0.8) at the midpoint between the two ends;
2. reruns diffad's exact search with λ = float32(0.8) and compares its p-value with the
   stored si4onnx exhaustive one.

Usage::

    python benchmarks/si4onnx_threshold_check.py RESULT.json --seed S [--images 1] --out F.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import si_models  # noqa: E402
from onnx_export import reference_reconstruction  # noqa: E402
from si_vs_si4onnx import draw_pairs, merge_touching  # noqa: E402

from diffad.bench.results import write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402


def selected_at(z, a, b, region, loc, rec_seed, lam, shape) -> bool:
    """M(a + b z) == region, by a direct float64 forward pass (no tracing)."""
    n = region.size
    x = (a[:n] + b[:n] * z).reshape(1, *shape)
    rec = reference_reconstruction(loc.model_, loc.chain(), x, rec_seed)
    c = shape[0]
    kernel = torch.ones(c, 1, 3, 3, dtype=torch.float64) / 9.0
    diff = torch.from_numpy(rec - x)
    e = np.abs(F.conv2d(diff, kernel, padding=1, groups=c).numpy()).ravel()
    return bool(np.array_equal(e > lam, region))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--seed", type=int, required=True, help="--seed of that run")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = json.loads(Path(args.result).read_text())
    size, lam = data["size"], float(data["lam"])
    lam32 = float(np.float32(lam))
    loc = si_models.get_localizer(size)
    n_img = min(args.images, len(data["per_image"]))
    pairs, _ = draw_pairs(size, n_img, args.seed, data["delta"], loc, lam)
    rows = []
    for (x, ref, rec_seed), e in zip(pairs, data["per_image"], strict=False):
        if rec_seed != e["recon_seed"] or "p_diffad_exact" not in e.get("comparison", {}):
            continue
        region = np.ravel(e["diffad"]["exact"]["region"]).astype(bool)
        y = np.concatenate([x.ravel(), ref.ravel()])
        m = region.astype(np.float64)
        eta = np.concatenate([m, -m]) / m.sum()
        norm = float(np.sqrt(eta @ eta))
        z_obs = float(eta @ y) / norm
        b = eta / norm
        a = y - z_obs * b
        iv = e["comparison"]["intervals_z_within_range"]
        ends = []
        for d_end, s_end in zip(
            np.ravel(iv["diffad"]).tolist(), np.ravel(iv["si4onnx"]).tolist(), strict=False
        ):
            if d_end == s_end:
                continue
            mid = 0.5 * (d_end + s_end)
            in_d = any(lo <= mid <= hi for lo, hi in iv["diffad"])
            truth = selected_at(mid, a, b, region, loc, rec_seed, lam, x.shape)
            ends.append(
                {
                    "diffad_end": d_end,
                    "si4onnx_end": s_end,
                    "midpoint": mid,
                    "selected_at_midpoint_lam_0.8": truth,
                    "right_engine": "diffad" if truth == in_d else "si4onnx",
                }
            )
        t0 = time.perf_counter()
        res = SelectiveTest(
            loc,
            1.0,
            lam=lam32,
            seed=rec_seed,
            device="cpu",
            termination="exhaustive",
            z_max=10.0 + abs(z_obs),
        ).test(x, ref, "parametric")
        rows.append(
            {
                "image": e["image"],
                "p_diffad_lam_0.8": e["comparison"]["p_diffad_exact"],
                "p_si4onnx_exhaustive": e["comparison"]["p_si4onnx_exhaustive"],
                "abs_diff_lam_0.8": e["comparison"]["abs_diff"],
                "p_diffad_lam_float32": res.p_value,
                "abs_diff_lam_float32": abs(res.p_value - e["comparison"]["p_si4onnx_exhaustive"]),
                "diffad_intervals_lam_float32": merge_touching(np.asarray(res.intervals).tolist()),
                "si4onnx_intervals": iv["si4onnx"],
                "differing_ends": ends,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if "intervals" not in k}, indent=1))
    out = {
        "lam": lam,
        "lam_float32": lam32,
        "result_file": args.result,
        "rows": rows,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    write_json(args.out, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
