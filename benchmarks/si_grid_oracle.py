"""Check one DAL-Test truncation set against direct float64 reconstructions on a dense z grid.

For validity trial ``--trial`` of ``si_validity.py`` (same seeds, the cached synthetic-setting
model of size D), the parametric search gives the truncation set 𝒵 = {z : M(z) = M_obs}. This
script recomputes M(z) independently — the plain float64 ``reconstruct`` of the U-Net at each
grid point, no tracing — on ``--points`` points of [z_obs − width, z_obs + width] and counts
the grid points where the two disagree. Disagreements can only sit within float rounding of an
interval end; any other one would be a tracing error.

Example: ``python benchmarks/si_grid_oracle.py --size 16 --trial 1 --out F.json``
(``--cov ar1``: the AR(1) covariance of ``si_validity.py --cov ar1``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402
from si_validity import LAM, ar1_cov, draw_trial  # noqa: E402

from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402


def grid_membership(loc, a, b, grid, size: int, seed: int, chunk: int = 500) -> np.ndarray:
    """M(a + b·z) == M_obs at every grid point, by direct float64 reconstructions."""
    net = copy.deepcopy(loc.model_).double().eval()
    chain = loc.chain()
    # The same noise as the localiser of ``seed`` (its maps and its region test): drawn in
    # float64, stored in float32, used in float64.
    noises = [n.double() for n in chain.draw_noise((1, 1, size, size), seed)]
    out = []
    for s in range(0, len(grid), chunk):
        zs = grid[s : s + chunk]
        imgs = torch.from_numpy((a[None] + zs[:, None] * b[None]).reshape(-1, 1, size, size))
        with torch.no_grad():
            rec = chain.run(net, imgs, noises)
        filt = F.avg_pool2d(rec - imgs, 3, stride=1, padding=1).reshape(len(zs), -1)
        out.append((filt.abs() > LAM).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--trial", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the validity trials")
    parser.add_argument("--cov", choices=("iid", "ar1"), default="iid")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--points", type=int, default=4001)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loc = get_localizer(args.size, args.train_steps, 0, verbose=False)
    x, r = draw_trial(args.size, 0.0, args.cov, args.seed, args.trial)
    sigma = ar1_cov(args.size) if args.cov == "ar1" else np.eye(args.size * args.size)
    tester = SelectiveTest(loc, sigma, lam=LAM, batch_size=16, device="cpu")
    machine = machine_info()
    t0 = time.perf_counter()
    # The float64 pair as drawn (model layout, no preprocessing), as si_validity.py tests it.
    res = tester.test_prepared(x, r)
    if not res.selected:
        raise SystemExit("no region selected in this trial: pick another --trial")
    m = res.region.reshape(-1)
    k = int(m.sum())
    # The line of the test, computed here from Σ independently of SelectiveTest.
    s1 = sigma @ m.astype(np.float64)
    sd = np.sqrt(2.0 * m @ s1) / k
    b = s1 / (k * sd)
    a = x.reshape(-1) - res.z * b
    grid = np.linspace(res.z - args.width, res.z + args.width, args.points)
    inside = (grid_membership(loc, a, b, grid, args.size, loc.seed) == m[None]).all(axis=1)
    ivs = res.intervals
    found = ((grid[:, None] >= ivs[:, 0]) & (grid[:, None] <= ivs[:, 1])).any(axis=1)
    mismatch = grid[found != inside]
    ends = ivs.reshape(-1)
    doc = {
        "size": args.size,
        "cov": args.cov,
        "trial": args.trial,
        "z": res.z,
        "region_size": k,
        "p_value": res.p_value,
        "p_value_bounds": list(res.p_value_bounds),
        "grid": [float(grid[0]), float(grid[-1]), args.points],
        "grid_points_inside": int(inside.sum()),
        "mismatches": int(mismatch.size),
        "mismatch_max_distance_to_an_end": float(
            max((np.min(np.abs(ends - z)) for z in mismatch), default=0.0)
        ),
        "intervals_within_grid": [
            [float(lo), float(hi)] for lo, hi in ivs if hi >= grid[0] and lo <= grid[-1]
        ],
        "seconds": time.perf_counter() - t0,
        "command": machine["command"],
        "machine": machine,
    }
    write_json(args.out, doc)
    print({k: v for k, v in doc.items() if k not in ("machine", "intervals_within_grid")})


if __name__ == "__main__":
    main()
