"""Null uniformity of the non-exact region tests on synthetic Gaussian images.

A small DDPM (the ``si_models`` settings: t′ = 460, 5 DDIM calls) is trained on N(0, 1) images
of side D. The region test is calibrated on ``--calibration`` further null images (noise model,
λ, the reference — the mean of its estimation images — and the healthy null statistics), then
``--trials`` null images N(0, 1) are tested against that reference, as the healthy null images
were (a conformal p-value needs the tested image and the null images treated alike), with:

- ``fission`` against the Gaussian null (Σ estimated, τ = 1);
- ``fission`` against the scaled and the conformal nulls;
- with ``--tile-trials``, the exact tile test (:mod:`diffad.selective.tiles`, Bonferroni over
  the tiles) on further null draws: its rejection rate, which must be at most α;
- ``rank`` (the most extreme component of the map at λ_rank, ranked among all the healthy null
  images: conformal; :mod:`diffad.selective.rank`).

For each: the rejection rate at α = 0.05 among the trials with a region (for ``rank``, among
all trials: an image with no component has S = 0 and p = 1), its 95 %
Clopper-Pearson band, and the Kolmogorov-Smirnov p-value of the p-values against U(0, 1)
(for the conformal p-values, which are discrete, against their exact null distribution:
uniform on {1/(m+1), ..., 1}). These trials share one calibration, so a conformal p-value's
rate here is its rate given that calibration, which varies around α from one calibration to
the next.

The guarantee of ``rank`` is over the draw of the healthy null images too; ``--groups``
checks it directly: with the calibration's noise model, reference and λ_rank, the statistic
S of ``--groups`` × ``--group-size`` further null images (``SelectiveTest.rank_statistics``),
and per disjoint group the rank p-value of its last image among the others (m =
group size − 1): independent p-values, uniform on {1, …, m+1}/(m+1) when the test is valid.

    python benchmarks/region_null.py --size 8 --trials 600 \\
        --out benchmarks/results/region_null_d8.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kstest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import get_localizer  # noqa: E402

from diffad.provenance import write_result  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402
from diffad.selective.noise import clopper_pearson  # noqa: E402

ALPHA = 0.05
TESTS = {
    "fission_gaussian": ("fission", "gaussian"),
    "fission_scaled": ("fission", "scaled"),
    "fission_conformal": ("fission", "conformal"),
    "rank": ("rank", "conformal"),
}


def summary(p_values: list[float], n_trials: int, m_null: int | None) -> dict[str, Any]:
    """Rejection rate with its band and the KS test against the exact null law."""
    ps = np.asarray(p_values)
    k, n = int(np.sum(ps < ALPHA)), len(ps)
    low, high = clopper_pearson(k, n)
    if m_null is None:
        ks = kstest(ps, "uniform").pvalue
    else:
        # A conformal p-value with m null scores is uniform on {1, ..., m+1}/(m+1): compare
        # a uniform jitter inside each atom with U(0, 1).
        jitter = np.random.default_rng(0).uniform(-1.0 / (m_null + 1), 0.0, n)
        ks = kstest(ps + jitter, "uniform").pvalue
    return {
        "tested": n,
        "trials": n_trials,
        "rejected": k,
        "rate": k / n if n else None,
        "band": [low, high],
        "ks_p": float(ks),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--trials", type=int, default=600)
    p.add_argument("--calibration", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tile-trials", type=int, default=0, help="null draws for the tile test")
    p.add_argument("--tile-size", type=int, default=4)
    p.add_argument("--groups", type=int, default=600, help="independent rank p-values")
    p.add_argument("--group-size", type=int, default=41, help="m + 1 (41: P(p < 0.05) = 2/41)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/region_null.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    loc = get_localizer(args.size, device="cpu")
    rng = np.random.default_rng(args.seed)
    d = args.size
    healthy = rng.standard_normal((args.calibration, 1, d, d)).astype(np.float32)
    tester = SelectiveTest(loc, device="cpu", random_state=args.seed)
    tester.calibrate(healthy, check_fraction=0.05, lam_percentile=97.0)
    p_values: dict[str, list[float]] = {name: [] for name in TESTS}
    for _ in range(args.trials):
        x = rng.standard_normal((1, d, d))
        for name, (method, null) in TESTS.items():
            res = tester.test_prepared(x, None, method, null=null)
            if res.p_value is not None:
                p_values[name].append(res.p_value)
            elif method == "rank":  # no component: S = 0, p = 1 (rank's rate is over all)
                p_values[name].append(1.0)
    m = {
        "fission": int(np.isfinite(tester.null_z_["fission"]).sum()),
        "rank": len(tester.null_z_["rank"]),  # every null image counts (0: no component)
    }
    result: dict[str, Any] = {
        "command": command,
        "size": d,
        "alpha": ALPHA,
        "calibration_images": args.calibration,
        "null_images": m,
        "noise_kind": tester.noise_kind_,
        "tests": {
            "fission_gaussian": summary(p_values["fission_gaussian"], args.trials, None),
            "fission_scaled": summary(p_values["fission_scaled"], args.trials, None),
            "fission_conformal": summary(p_values["fission_conformal"], args.trials, m["fission"]),
            "rank": summary(p_values["rank"], args.trials, m["rank"]),
        },
    }
    pool = rng.standard_normal((args.groups * args.group_size, 1, d, d))
    stats = tester.rank_statistics(pool).reshape(args.groups, args.group_size)
    m = args.group_size - 1
    grouped = (1 + (stats[:, :-1] >= stats[:, -1:]).sum(axis=1)) / (m + 1)
    result["tests"]["rank_independent_groups"] = {
        **summary(list(grouped), args.groups, m),
        "null_images_per_p_value": m,
        "exact_rate": float(np.ceil(ALPHA * (m + 1) - 1) / (m + 1)),  # P(p < α) if valid
    }
    if args.tile_trials:
        # The tile test (exact, Bonferroni over the tiles: conservative, so its p-values are
        # not uniform); decided at α with termination "decision".
        # The same calibrated test, now deciding at α (its last use above is done).
        tester.termination, tester.alpha, tester.tile_size = "decision", ALPHA, args.tile_size
        rejected, tested = 0, 0
        for _ in range(args.tile_trials):
            res = tester.test_prepared(rng.standard_normal((1, d, d)), None, "tile")
            if res.selected:
                tested += 1
                rejected += int(res.p_value_bounds[1] < ALPHA)
        low, high = clopper_pearson(rejected, tested)
        result["tile"] = {
            "tile_size": args.tile_size, "trials": args.tile_trials, "tested": tested,
            "rejected": rejected, "rate": rejected / tested if tested else None,
            "band": [low, high],
        }  # fmt: skip
        print(f"D={d} tile: {rejected}/{tested} rejected, band [{low:.3f}, {high:.3f}]")
    write_result(args.out, result, command=command)
    for name, s in result["tests"].items():
        lo, hi = s["band"]
        rate = f"{s['rate']:.3f} [{lo:.3f}, {hi:.3f}] of {s['tested']}"
        print(f"D={d} {name}: {rate}, KS p {s['ks_p']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
