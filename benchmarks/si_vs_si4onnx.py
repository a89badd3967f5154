"""DAL-Test p-values: diffad vs the authors' engine si4onnx 0.1.13, same model, images, noise.

Setting (published synthetic one, design.md §4): the U-Net of ``benchmarks/si_models.py``
trained on 1000 i.i.d. N(0, 1) images of size D; test pairs X, X' i.i.d. N(0, 1) (plus an
optional anomaly square of side ⌊D/3⌋ + Δ in X); D(X) = seeded DDIM reconstruction
(T' = 460, steps [460, 345, 230, 115, 0], η = 1), image k uses reconstruction seed k;
E = |K * (D(X) − X)| with a 3×3 mean filter (zero padding), M = {E > λ}, λ = 0.8;
η = (1_M; −1_M)/|M|, Σ = I. Pairs whose M is empty are skipped (counted).

For each image the SAME trained network and the SAME noise realisation are exported to ONNX
(``benchmarks/onnx_export.py``: float64, every constant baked in; its si4onnx-interpreted
output is checked against diffad's float64 ``reconstruct``), and both engines compute:

* si4onnx ``default``: ``inference_mode="parametric"`` with sicore's defaults
  (search strategy "pi3" = from z_obs outwards by steps of 1e-6 past each piece end,
  termination "precision" = stop when the p-value bracket is narrower than 1e-3);
* si4onnx ``exhaustive``: every piece of sicore's range [−10 − |z|, 10 + |z|];
* diffad ``default``: ``SelectiveTest(...)`` with the library defaults;
* diffad ``precision``: ``termination="precision", precision=1e-3`` (like si4onnx default);
* diffad ``exact``: ``termination="exhaustive", z_max=10 + |z|`` (si4onnx's exhaustive range).

Agreement (``p_diffad`` vs ``p_si4onnx``, ``max_abs_diff``) is diffad exact vs si4onnx
exhaustive. Speed (``median_seconds_*``, ``speed_ratio``) is per p-value, median over the
images of one run, both engines single-threaded (``--threads``) on the same machine:
``speed_ratio`` = si4onnx default / diffad default; the ``exact`` block gives the ratio of
the exact modes and ``precision`` the like-for-like precision-1e-3 ratio.

The two-sided p-value is the same in both engines: with F = P(Z ≤ z | Z ∈ 𝒵) for a standard
normal Z truncated to the truncation set 𝒵, p = 2·min(F, 1 − F) (sicore 3.0.0
``SelectiveInference._convert_cdf_value_to_pvalue``; diffad ``alternative="two-sided"``).
sicore forms 1 − F by subtraction (so its p bottoms out near 1e-16), diffad computes the
upper tail mass directly in log space.

si4onnx runs in its own venv (``benchmarks/si4onnx_setup.sh``, created on first run) through
``benchmarks/si4onnx_worker.py``; it is never a diffad dependency. Exporting needs ``onnx``
in diffad's environment (``pip install onnx``).

Usage::

    python benchmarks/si_vs_si4onnx.py --size 8 --images 5 --out F.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import si_models  # noqa: E402
from onnx_export import (  # noqa: E402
    canonical_noise,
    export_reconstruction,
    reference_reconstruction,
)
from si_vs_si4onnx_summary import default_agreement  # noqa: E402

from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402

SI4ONNX_MODES = {
    "default": {"name": "default", "inference_mode": "parametric"},
    "exhaustive": {"name": "exhaustive", "inference_mode": "exhaustive"},
    "oc": {"name": "oc", "inference_mode": "over_conditioning"},
}


def git_state() -> dict:
    """Commit of the checkout and whether the engine files differ from it (shared tree)."""

    def run(*cmd: str) -> str:
        try:
            return subprocess.run(
                ["git", *cmd], cwd=HERE, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": run("rev-parse", "--short", "HEAD"),
        "engine_files_modified": run("status", "--porcelain", "--", "../src/diffad/inference"),
    }


def setup_venv(venv: str | None) -> str:
    """Python of si4onnx's private venv (created by si4onnx_setup.sh when missing)."""
    cmd = ["bash", str(HERE / "si4onnx_setup.sh")] + ([venv] if venv else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def use_noise(loc, rec_seed: int, chain) -> None:
    """Set the localiser's reconstruction seed to ``rec_seed`` (the map and the region test
    use the localiser's noise draws) and check that its draws are the noise exported to
    ONNX for that seed (``onnx_export.canonical_noise``), bit for bit."""
    loc.set_params(seed=rec_seed)
    ours = loc.region_map_definition().noises
    exported = canonical_noise((1, *loc.image_shape_), chain, rec_seed)
    if len(ours) != len(exported) or not all(
        torch.equal(a.to(torch.float64), b) for a, b in zip(ours, exported, strict=True)
    ):
        raise RuntimeError(f"the localiser's noise for seed {rec_seed} is not the exported one")


def draw_pairs(size: int, n: int, seed: int, delta: float, loc, lam: float) -> tuple:
    """``n`` pairs (X, X') with a non-empty selected region, their reconstruction seeds and
    the number of pairs skipped because M was empty. Leaves ``loc`` at the seed of the last
    pair drawn."""
    rng = np.random.default_rng(seed)
    side = size // 3
    out, skipped, k = [], 0, 0
    while len(out) < n:
        x = rng.standard_normal((1, size, size))
        ref = rng.standard_normal((1, size, size))
        if delta:
            x[:, :side, :side] += delta
        rec_seed = k
        k += 1
        loc.set_params(seed=rec_seed)
        res = SelectiveTest(loc, 1.0, lam=lam, device="cpu").test_prepared(x, ref, "naive")
        if not res.selected:
            skipped += 1
            continue
        out.append((x, ref, rec_seed))
    return out, skipped


def run_diffad(loc, x, ref, rec_seed: int, lam: float, modes: list) -> dict:
    """diffad's modes on one pair; each timed from a fresh SelectiveTest (the tracer set-up
    for this noise realisation is part of the cost of a p-value).

    The pair is tested as given, in float64 (``test_prepared``: the images are in model
    layout, no preprocessing), as si4onnx receives it; ``loc`` is set to ``rec_seed``.
    """
    runs = {}
    loc.set_params(seed=rec_seed)
    # z_obs (for the range of the exact mode) from the cheap naive test, not timed
    z_obs = SelectiveTest(loc, 1.0, lam=lam, device="cpu").test_prepared(x, ref, "naive").z
    configs = {
        "default": {},
        "precision": {"termination": "precision", "precision": 1e-3},
        "exact": {"termination": "exhaustive", "z_max": 10.0 + abs(z_obs)},
    }
    for name in modes:
        kw = configs[name]
        t0, c0 = time.perf_counter(), time.process_time()
        st = SelectiveTest(loc, 1.0, lam=lam, device="cpu", **kw)
        res = st.test_prepared(x, ref, method="parametric")
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        runs[name] = {
            "p_value": res.p_value,
            "p_value_bounds": None if res.p_value_bounds is None else list(res.p_value_bounds),
            "z": res.z,
            "statistic": res.statistic,
            "region_size": int(res.region_size),
            "region": np.asarray(res.region).astype(int).tolist(),
            "intervals_z": np.asarray(res.intervals).tolist(),
            "n_pieces": int(res.n_pieces),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "params": {k: v for k, v in kw.items()},
        }
    return runs


def median(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def merge_touching(iv: list, tol: float = 1e-10) -> list:
    """Union of sorted intervals, joining gaps up to ``tol`` (sicore's RealSubset does the
    same with tol 1e-10, so both engines' sets are shown in the same form)."""
    out: list = []
    for a, b in sorted(iv):
        if out and a <= out[-1][1] + tol:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def symdiff_measure(u: list, v: list) -> float:
    """Length of the symmetric difference of two unions of disjoint sorted intervals."""
    pts = sorted({p for iv in (u, v) for seg in iv for p in seg})

    def inside(iv: list, x: float) -> bool:
        return any(a <= x <= b for a, b in iv)

    total = 0.0
    for a, b in zip(pts[:-1], pts[1:], strict=False):
        mid = 0.5 * (a + b)
        if inside(u, mid) != inside(v, mid):
            total += b - a
    return total


def clip_intervals(iv: list, lo: float, hi: float) -> list:
    """Intervals restricted to [lo, hi] (both engines may report pieces beyond the range)."""
    out = []
    for a, b in iv:
        a, b = max(a, lo), min(b, hi)
        if a < b:
            out.append([a, b])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the test images")
    parser.add_argument("--delta", type=float, default=0.0, help="anomaly shift (0 = null)")
    parser.add_argument("--lam", type=float, default=0.8)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument(
        "--si4onnx-modes",
        default="default,exhaustive",
        help="comma-separated subset of default,exhaustive,oc",
    )
    parser.add_argument(
        "--diffad-modes",
        default="default,precision,exact",
        help="comma-separated subset of default,precision,exact",
    )
    parser.add_argument(
        "--si4onnx-threshold-float64",
        action="store_true",
        help="give si4onnx the exact float64 λ (it otherwise rounds λ to float32, which "
        "moves the truncation-set ends by ~1e-7; see docs/benchmarks/dal_test_validity.md)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both engines")
    parser.add_argument("--venv", default=None, help="si4onnx venv (default ~/.cache/diffad/…)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.si4onnx_modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in SI4ONNX_MODES]
    if bad:
        raise ValueError(f"unknown si4onnx modes {bad}; choose from {sorted(SI4ONNX_MODES)}")
    dmodes = [m.strip() for m in args.diffad_modes.split(",") if m.strip()]
    bad = [m for m in dmodes if m not in ("default", "precision", "exact")]
    if bad or not dmodes:
        raise ValueError(f"unknown diffad modes {bad}; choose from default, precision, exact")
    torch.set_num_threads(args.threads)
    info = {**machine_info(), "git": git_state()}
    # (engine, mode) of every timed run, in report order.
    timed_runs = [("diffad", m) for m in ("default", "precision", "exact")]
    timed_runs += [("si4onnx", m) for m in modes]

    venv_python = setup_venv(args.venv)
    loc = si_models.get_localizer(args.size, args.train_steps)
    chain = loc.chain()
    pairs, skipped = draw_pairs(args.size, args.images, args.seed, args.delta, loc, args.lam)
    print(f"D={args.size}: {len(pairs)} pairs with a region ({skipped} empty skipped)", flush=True)

    per_image = []

    def write_summary() -> dict:
        """Compare what has been computed so far and write --out (after every image)."""

        # ------------------------------------------------------------------ comparison
        def si_run(e: dict, mode: str) -> dict | None:
            r = e.get("si4onnx", {}).get(mode)
            return r if r and "p_value" in r else None

        p_diffad, p_si, diffs, z_diffs, same_region = [], [], [], [], []
        for e in per_image:
            d = e["diffad"].get("exact")
            s = si_run(e, "exhaustive")
            comp = {}
            if s is not None and d is not None:
                rng_lo, rng_hi = -10.0 - abs(s["z"]), 10.0 + abs(s["z"])
                comp = {
                    "p_diffad_exact": d["p_value"],
                    "p_si4onnx_exhaustive": s["p_value"],
                    "abs_diff": abs(d["p_value"] - s["p_value"]),
                    "z_abs_diff": abs(d["z"] - s["z"]),
                    "same_region": bool(np.array_equal(np.ravel(d["region"]), np.ravel(s["roi"]))),
                    "intervals_z_within_range": {
                        "range": [rng_lo, rng_hi],
                        "diffad": clip_intervals(merge_touching(d["intervals_z"]), rng_lo, rng_hi),
                        "si4onnx": clip_intervals(s["truncated_intervals_z"], rng_lo, rng_hi),
                    },
                    "pieces": {"diffad": d["n_pieces"], "si4onnx": s["search_count"]},
                    "intervals_symdiff_length": symdiff_measure(
                        clip_intervals(merge_touching(d["intervals_z"]), rng_lo, rng_hi),
                        clip_intervals(s["truncated_intervals_z"], rng_lo, rng_hi),
                    ),
                }
                p_diffad.append(d["p_value"])
                p_si.append(s["p_value"])
                diffs.append(comp["abs_diff"])
                z_diffs.append(comp["z_abs_diff"])
                same_region.append(comp["same_region"])
            sd = si_run(e, "default")
            if sd is not None:
                dd = e["diffad"]
                comp["default_modes"] = {
                    "p_diffad_default": dd["default"]["p_value"] if "default" in dd else None,
                    "p_diffad_precision": dd["precision"]["p_value"] if "precision" in dd else None,
                    "p_si4onnx_default": sd["p_value"],
                    "si4onnx_bounds": [sd["inf_p"], sd["sup_p"]],
                    "diffad_precision_bounds": (
                        dd["precision"]["p_value_bounds"] if "precision" in dd else None
                    ),
                }
            e["comparison"] = comp

        def secs(engine: str, mode: str, key: str = "seconds") -> list:
            out = []
            for e in per_image:
                r = e["diffad"].get(mode) if engine == "diffad" else si_run(e, mode)
                out.append(r.get(key) if r else None)
            return out

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        med = {run: median(secs(*run)) for run in timed_runs}
        # CPU seconds too: on a shared machine wall time depends on the load of the moment.
        cpu = {run: median(secs(*run, "cpu_seconds")) for run in timed_runs}

        def pair(si_mode: str, d_mode: str) -> dict:
            return {
                "median_seconds_diffad": med.get(("diffad", d_mode)),
                "median_seconds_si4onnx": med.get(("si4onnx", si_mode)),
                "speed_ratio": ratio(med.get(("si4onnx", si_mode)), med.get(("diffad", d_mode))),
                "median_cpu_seconds_diffad": cpu.get(("diffad", d_mode)),
                "median_cpu_seconds_si4onnx": cpu.get(("si4onnx", si_mode)),
                "cpu_speed_ratio": ratio(
                    cpu.get(("si4onnx", si_mode)), cpu.get(("diffad", d_mode))
                ),
            }

        out = {
            "size": args.size,
            "images": len(pairs),
            "images_done": len(per_image),
            "skipped_empty_region": skipped,
            "delta": args.delta,
            "lam": args.lam,
            "p_diffad": p_diffad,
            "p_si4onnx": p_si,
            "compared": len(p_si),
            "max_abs_diff": max(diffs) if diffs else None,
            "max_z_abs_diff": max(z_diffs) if z_diffs else None,
            "all_regions_equal": all(same_region) if same_region else None,
            "median_seconds_diffad": med.get(("diffad", "default")),
            "median_seconds_si4onnx": med.get(("si4onnx", "default")),
            "speed_ratio": ratio(med.get(("si4onnx", "default")), med.get(("diffad", "default"))),
            "cpu_speed_ratio": pair("default", "default")["cpu_speed_ratio"],
            "default_modes": default_agreement(per_image),
            "exact": pair("exhaustive", "exact"),
            "precision_1e-3": pair("default", "precision"),
            "seconds": {f"{eng}_{m}": secs(eng, m) for eng, m in timed_runs},
            "cpu_seconds": {f"{eng}_{m}": secs(eng, m, "cpu_seconds") for eng, m in timed_runs},
            "modes": {
                "si4onnx_default": "inference_mode='parametric', search 'pi3', step 1e-6, "
                "termination 'precision' 1e-3 (sicore 3.0.0 defaults), memoization=True",
                "si4onnx_exhaustive": "inference_mode='exhaustive': every piece of "
                "[-10-|z|, 10+|z|] (sicore limits), memoization=True",
                "diffad_default": "SelectiveTest defaults (termination='precision' 1e-3, "
                f"z_max=10 widened to |z|+5, batch_size="
                f"{SelectiveTest(None, 1.0).search_batch_size(args.size**2)})",
                "diffad_precision": "termination='precision', precision=1e-3",
                "diffad_exact": "termination='exhaustive', z_max=10+|z| (si4onnx's range)",
                "si4onnx_threshold": "float64 lambda (patched)"
                if args.si4onnx_threshold_float64
                else "as shipped: float32(lambda) widened to float64 (0.8 -> 0.800000011920929)",
                "p_value": "two-sided: p = 2 min(F, 1-F), F = P(Z <= z | Z in truncation set), "
                "in both engines",
                "onnx_graph": "float64, constants baked in, nodes re-ordered so that si4onnx "
                "memoisation is valid (see onnx_export._nest_intervals_order)",
            },
            "per_image": per_image,
            "si4onnx_wall_seconds": si_wall,
            "si4onnx_versions": si_versions,
            "command": info["command"],
            "machine": info | {"loadavg_end": list(os.getloadavg())},
        }
        write_json(args.out, out, indent=1)
        return out

    with tempfile.TemporaryDirectory(prefix="diffad_si4onnx_") as tmp:
        tmpd = Path(tmp)
        specs = []
        for i, (x, ref, rec_seed) in enumerate(pairs):
            onnx_path = tmpd / f"img{i}.onnx"
            use_noise(loc, rec_seed, chain)  # the noise exported is the noise diffad traces
            export_reconstruction(loc.model_, chain, loc.image_shape_, rec_seed, onnx_path)
            np.save(tmpd / f"img{i}_x.npy", x[None])
            np.save(tmpd / f"img{i}_ref.npy", ref[None])
            specs.append(
                {
                    "onnx": str(onnx_path),
                    "x": str(tmpd / f"img{i}_x.npy"),
                    "ref": str(tmpd / f"img{i}_ref.npy"),
                    "recon_out": str(tmpd / f"img{i}_recon.npy"),
                }
            )
        # Interleaved per image (diffad, then si4onnx on the same pair) so that the load of
        # this shared machine weighs on both engines alike; si4onnx runs in a subprocess of
        # its venv (start-up not timed: each engine times its own p-value computation).
        si_versions, si_wall = None, 0.0
        for i, (x, ref, rec_seed) in enumerate(pairs):
            runs = run_diffad(loc, x, ref, rec_seed, args.lam, dmodes)
            per_image.append({"image": i, "recon_seed": rec_seed, "diffad": runs})
            for m, d in runs.items():
                print(
                    f"diffad image {i} {m}: |M|={d['region_size']} z={d['z']:.4f} "
                    f"p={d['p_value']:.10g} pieces={d['n_pieces']} {d['seconds']:.1f}s",
                    flush=True,
                )
            job = {
                "lam": args.lam,
                "var": 1.0,
                "filter_size": 3,
                "threads": args.threads,
                "threshold_float64": bool(args.si4onnx_threshold_float64),
                "modes": [SI4ONNX_MODES[m] for m in modes],
                "images": [specs[i]],
                "first_image": i,
            }
            job_path, res_path = tmpd / f"job{i}.json", tmpd / f"result{i}.json"
            job_path.write_text(json.dumps(job))
            t0 = time.perf_counter()
            proc = subprocess.run(
                [venv_python, str(HERE / "si4onnx_worker.py"), str(job_path), str(res_path)],
                stderr=None,
            )
            si_wall += time.perf_counter() - t0
            if not res_path.exists():
                raise RuntimeError(f"si4onnx worker failed (exit {proc.returncode})")
            si = json.loads(res_path.read_text())
            si_versions = si.get("versions")
            runs_si = si["results"][0]["runs"] if si["results"] else []
            for r in runs_si:
                r.pop("trace", None)
            per_image[i]["si4onnx"] = {r["mode"]: r for r in runs_si}
            # What si4onnx sees: its own float64 interpretation of the graph vs diffad's D(X).
            if Path(specs[i]["recon_out"]).exists():
                onnx_rec = np.load(specs[i]["recon_out"])
                ref64 = reference_reconstruction(loc.model_, chain, x[None], rec_seed)
                loc.set_params(seed=rec_seed)
                ref32 = loc.reconstruct(x[None])
                per_image[i]["onnx_check"] = {
                    "max_abs_diff_vs_diffad_float64": float(np.abs(onnx_rec - ref64).max()),
                    "max_abs_diff_vs_localizer_float32": float(np.abs(onnx_rec - ref32).max()),
                }
            write_summary()  # partial results survive a time limit

    out = write_summary()
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "compared",
                    "max_abs_diff",
                    "median_seconds_diffad",
                    "median_seconds_si4onnx",
                    "speed_ratio",
                    "exact",
                )
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
