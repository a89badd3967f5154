"""Type I error and power of DAL-Test in the published synthetic setting.

A DDPM (published U-Net) is trained once on 1000 i.i.d. N(0, 1) images of size D (cached by
``si_models.py``). Each trial draws a test image X and a reference X′: i.i.d. N(0, 1) pixels
(``--cov iid``) or N(0, Σ) with Σ_ij = 0.5^|i−j| over the flattened pixels (``--cov ar1``);
with ``--delta Δ > 0`` a square of side ⌊D/3⌋ at a random position of X is shifted by Δ.
Selection: λ = 0.8, 3×3 mean filter, T' = 460, DDIM steps [460, 345, 230, 115, 0], η = 1;
α = 0.05. Trials with an empty region are not tested (counted in ``tested``).

Writes JSON (``size, delta, trials, tested, rejection_rate`` by method, ``mean_pieces``,
``mean_seconds``, binomial confidence bands, KS test of the null p-values, the command and the
machine) and a QQ-plot PNG next to it. Partial results are written after every chunk.

With ``--model disyre`` the localiser is the DISYRE restorer of ``si_models.get_disyre``
(trained on N(0.5, 0.1²) images), X and X′ have N(0.5, 0.1²) pixels (Σ = 0.01·I, scaled
likewise for ``ar1``), the map is the severity-ensemble map with the 3×3 mean filter, and λ
is the 99th percentile of that map over 100 further null images (recorded as ``lam``).

Example: ``python benchmarks/si_validity.py --size 8 --trials 200 --delta 0 --seed 0
--out benchmarks/results/si_validity_d8.json``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from si_models import DISYRE_MEAN, DISYRE_SD, get_disyre, get_localizer  # noqa: E402

from diffad.image.region_maps import mean_abs_error, restoration_map  # noqa: E402
from diffad.provenance import machine_info, write_json  # noqa: E402
from diffad.selective.dal import SelectiveTest  # noqa: E402

ALPHA = 0.05
LAM = 0.8


def ar1_cov(size: int, rho: float = 0.5) -> np.ndarray:
    """Σ_ij = rho^|i−j| over the row-major flattened D×D pixels."""
    idx = np.arange(size * size)
    return rho ** np.abs(idx[:, None] - idx[None, :])


def pixel_scale(model: str) -> tuple[float, float]:
    """Mean and sd of the null pixels of the ``model`` setting."""
    return (DISYRE_MEAN, DISYRE_SD) if model == "disyre" else (0.0, 1.0)


def draw_trial(size: int, delta: float, cov: str, seed: int, trial: int, model: str = "ddpm"):
    """One (X, X′) pair, seeded by (seed, trial); ``delta`` is in units of the pixel sd."""
    rng = np.random.default_rng([seed, trial])
    n = size * size
    if cov == "ar1":
        chol = np.linalg.cholesky(ar1_cov(size))
        x = (chol @ rng.standard_normal(n)).reshape(size, size)
        r = (chol @ rng.standard_normal(n)).reshape(size, size)
    else:
        x = rng.standard_normal((size, size))
        r = rng.standard_normal((size, size))
    if delta:
        side = size // 3
        i, j = rng.integers(0, size - side + 1, size=2)
        x[i : i + side, j : j + side] += delta
    mean, sd = pixel_scale(model)
    return mean + sd * x, mean + sd * r


def load_model(args: dict):
    """The localiser of ``args["model"]`` (cached after the first call)."""
    if args["model"] == "disyre":
        return get_disyre(args["size"], args["train_steps"], 0, verbose=False)
    return get_localizer(args["size"], args["train_steps"], 0, verbose=False)


def calibrated_lam(args: dict, n_images: int = 100) -> float:
    """λ of the DISYRE setting: the 99th percentile of the region map over null images
    drawn apart from every trial (seed offset 10⁶)."""
    loc = load_model(args)
    mean, sd = pixel_scale("disyre")
    rng = np.random.default_rng([args["seed"], 10**6])
    x = mean + sd * rng.standard_normal((n_images, 1, args["size"], args["size"]))
    x = x.astype(np.float32)
    # The region test's map: K ∗ (w ⊙ mean_k |R_k(X) − X|), 3×3 filter, fixed foreground.
    region = restoration_map(mean_abs_error(x, loc.restore(x)), loc.foreground_, 3)
    return float(np.percentile(region, 99))


def run_chunk(args: dict, trials: list[int]) -> list[dict]:
    """Worker: all methods on the given trials (one thread per worker)."""
    torch.set_num_threads(1)
    loc = load_model(args)
    var = pixel_scale(args["model"])[1] ** 2
    sigma = var * ar1_cov(args["size"]) if args["cov"] == "ar1" else var
    tester = SelectiveTest(
        loc,
        sigma,
        lam=args["lam"],
        termination=args["termination"],
        precision=args["precision"],
        alpha=ALPHA,
        batch_size=args["batch_size"],
        device="cpu",
    )
    out = []
    for trial in trials:
        x, r = draw_trial(args["size"], args["delta"], args["cov"], args["seed"], trial,
                          args["model"])  # fmt: skip
        row = {"trial": trial}
        for method in args["methods"]:
            c0 = time.process_time()
            # The float64 pair as drawn, in model layout (test() would first round it to the
            # float32 the localiser reads).
            res = tester.test_prepared(x, r, method=method)
            cpu = time.process_time() - c0
            if not res.selected:
                row["selected"] = False
                break
            row["selected"] = True
            row["region_size"] = res.region_size
            row["z"] = res.z
            row[method] = res.p_value
            if method == "parametric":
                # Rows without the key were made before the spacing became 3 (they used 1).
                row["search_spacing"] = tester.spacing
                row["pieces"] = res.n_pieces
                row["seconds"] = res.seconds
                row["cpu_seconds"] = cpu
                row["p_bounds"] = list(res.p_value_bounds)
        out.append(row)
    return out


def wilson(k: int, n: int, z: float = 1.959963984540054) -> list[float]:
    """Wilson 95 % interval of a binomial proportion."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [float(mid - half), float(mid + half)]


def summarise(rows: list[dict], args: dict, started: float, machine: dict) -> dict:
    """The JSON document from the per-trial rows collected so far."""
    tested = [r for r in rows if r.get("selected")]
    n = len(tested)
    out = {
        "size": args["size"],
        "delta": args["delta"],
        "cov": args["cov"],
        "trials": len(rows),
        "trials_requested": args["trials"],
        "tested": n,
        "model": args["model"],
        "alpha": ALPHA,
        "lam": args["lam"],
        "termination": args["termination"],
        "precision": args["precision"],
        "rejection_rate": {},
        "rejection_ci95": {},
        "p_values": {},
    }
    for m in args["methods"]:
        ps = np.array([r[m] for r in tested], dtype=np.float64)
        k = int(np.sum(ps <= ALPHA))
        out["rejection_rate"][m] = k / n if n else None
        out["rejection_ci95"][m] = wilson(k, n)
        out["p_values"][m] = ps.tolist()
    lo, hi = stats.binom.ppf([0.025, 0.975], n, ALPHA) / n if n else (None, None)
    out["binomial_band_at_alpha"] = [float(lo), float(hi)] if n else None
    if n and "parametric" in args["methods"]:
        out["ks_uniform_pvalue"] = {
            m: float(stats.kstest(np.array(out["p_values"][m]), "uniform").pvalue)
            for m in args["methods"]
            if m != "bonferroni"
        }
        out["mean_pieces"] = float(np.mean([r["pieces"] for r in tested]))
        out["mean_seconds"] = float(np.mean([r["seconds"] for r in tested]))
        out["median_seconds"] = float(np.median([r["seconds"] for r in tested]))
        out["mean_cpu_seconds"] = float(np.mean([r["cpu_seconds"] for r in tested]))
        out["max_p_bracket_width"] = float(max(r["p_bounds"][1] - r["p_bounds"][0] for r in tested))
        # With a coarse precision stop the bracket of a p-value near α may straddle it: count
        # the rejections that are certain and those that are possible.
        certain = sum(r["p_bounds"][1] <= ALPHA for r in tested)
        possible = sum(r["p_bounds"][0] <= ALPHA for r in tested)
        out["parametric_rejection_rate_bounds"] = [certain / n, possible / n]
    out["mean_region_size"] = float(np.mean([r["region_size"] for r in tested])) if n else None
    out["wall_seconds"] = time.time() - started
    out["command"] = machine["command"]
    out["machine"] = {**machine, "n_jobs": args["n_jobs"], "load_average_now": os.getloadavg()}
    out["settings"] = {k: args[k] for k in SETTINGS}
    out["rows"] = rows
    return out


SETTINGS = (
    "size", "delta", "cov", "seed", "termination", "precision", "train_steps", "methods", "model",
)


def previous_rows(path: Path, args: dict) -> list[dict]:
    """Per-trial rows of an earlier run with the same settings (``--resume``, ``--merge``)."""
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    # Files written before settings were recorded still carry most of them at top level.
    old = doc.get("settings") or {k: doc[k] for k in SETTINGS if k in doc}
    differ = [k for k in SETTINGS if k in old and old[k] != args[k]]
    if differ:
        raise SystemExit(f"{path} was made with other settings: {differ}")
    return list(doc.get("rows", []))


def qq_plot(doc: dict, path: Path) -> None:
    """QQ plot of the p-values of each method against U(0, 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for m, ps in doc["p_values"].items():
        if not ps:
            continue
        ps = np.sort(ps)
        q = (np.arange(1, len(ps) + 1) - 0.5) / len(ps)
        ax.plot(q, ps, ".", ms=3, label=m)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("p-value")
    ax.set_title(f"D={doc['size']}, Δ={doc['delta']}, {doc['cov']}, tested={doc['tested']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--delta", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cov", choices=("iid", "ar1"), default="iid")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--qq-only", action="store_true", help="only redraw the QQ plot of an existing --out"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the trials already in --out (same settings) and run only the missing ones",
    )
    parser.add_argument(
        "--first-trial",
        type=int,
        default=0,
        help="run trials first-trial .. trials−1 (split one setting over several processes)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="FILE",
        help="only pool the trials of these result files (same settings) into --out",
    )
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--termination", default="precision")
    parser.add_argument("--precision", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument(
        "--model", choices=("ddpm", "disyre"), default="ddpm", help="localiser under test"
    )
    parser.add_argument(
        "--methods", default="parametric,oc,naive,bonferroni", help="comma-separated"
    )
    ns = parser.parse_args()
    args = vars(ns)
    args["methods"] = ns.methods.split(",")
    if ns.qq_only:  # e.g. for the partial results of an interrupted run
        qq_plot(json.loads(Path(ns.out).read_text()), Path(ns.out).with_suffix(".png"))
        return
    started = time.time()
    machine = machine_info()
    out_path = Path(ns.out)
    torch.set_num_threads(1)  # the workers use one thread each; training and λ do too
    args["lam"] = calibrated_lam(args) if ns.model == "disyre" else LAM
    if ns.merge:
        missing = [f for f in ns.merge if not Path(f).is_file()]
        if missing:
            raise SystemExit(f"--merge: no such result file: {missing}")
        pooled = {r["trial"]: r for f in ns.merge for r in previous_rows(Path(f), args)}
        doc = summarise(sorted(pooled.values(), key=lambda r: r["trial"]), args, started, machine)
        doc["merged_from"] = ns.merge
        write_json(out_path, doc, indent=1)
        qq_plot(doc, out_path.with_suffix(".png"))
        print(json.dumps({k: doc[k] for k in ("size", "delta", "tested", "rejection_rate")}))
        return
    torch.set_num_threads(1)
    load_model(args)  # train once (cached) before timing
    rows = previous_rows(out_path, args) if ns.resume else []
    done = {r["trial"] for r in rows}
    todo = [t for t in range(ns.first_trial, ns.trials) if t not in done]
    chunks = [todo[s : s + ns.chunk] for s in range(0, len(todo), ns.chunk)]
    from joblib import Parallel, delayed

    jobs = Parallel(n_jobs=ns.n_jobs, return_as="generator_unordered")(
        delayed(run_chunk)(args, c) for c in chunks
    )
    for part in jobs:
        rows.extend(part)
        rows.sort(key=lambda r: r["trial"])
        doc = summarise(rows, args, started, machine)
        write_json(out_path, doc, indent=1)
        qq_plot(doc, out_path.with_suffix(".png"))
        print(
            f"{len(rows)}/{ns.trials} trials, tested {doc['tested']}, "
            f"rejection {doc['rejection_rate']}, {time.time() - started:.0f}s",
            flush=True,
        )
    doc = summarise(rows, args, started, machine)
    write_json(out_path, doc, indent=1)
    qq_plot(doc, out_path.with_suffix(".png"))
    print(json.dumps({k: doc[k] for k in ("size", "delta", "tested", "rejection_rate")}))


if __name__ == "__main__":
    main()
