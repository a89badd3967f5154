"""Region p-values on real brain MRI: validity on held-out healthy slices, power on lesions.

The demo's model (``diffad.demo.brain.SETTINGS["full"]``: DDPM, 32 px, trained on MNI152 slices;
``--localizer disyre`` the demo's DISYRE; ``--localizer ssim-ens`` the DDPM's SSIM-ens map,
selected on as shown: ``selection="shown"``, rank and fission only) and the 86 Colin27 slices of
the same band (another brain). Per split (``--splits``, seeded): 52 random Colin27 slices
calibrate the region test (``SelectiveTest.calibrate``: noise model and λ from about half, the
null statistics from the other half), the other 34 are tested — healthy, with a SYNTHETIC lesion
of the demo's generator (bright or dark blobs, δ 0.5–0.8) and of the brain benchmark's (shapes,
hyper/hypo/texture, δ 0.25–0.5). Two references: ``mean`` (the mean of the estimation slices)
and ``matched`` (the MNI152 slice at the same position plus the healthy mean offset; Σ of the
residuals).

Per image: ``rank`` (the default test: the most extreme component at λ_rank ranked among the
healthy null images, :mod:`diffad.selective.rank`); data fission (τ = ``--tau``) against the
Gaussian, scaled and conformal nulls; the naive statistic against the Gaussian and conformal
nulls; Bonferroni; on the first ``--oc`` images of each group of the first split OC (exact, one
piece), on its first ``--exact`` the exact DAL-Test (termination ``precision``: the p-value
bracketed to 1e-3, rejected when the bracket is below α) and, with the matched reference, on
the first ``--tile`` images of each group of every split the exact tile test (termination
``decision``). Also: the
noise-model check (variance of standardised fixed-disc means on held-out residuals) for the
Ledoit-Wolf (``local``) and the tapered sample covariance, and the power of ``--contrast-
methods`` against the demo generator's lesion contrast (``--contrasts``) on split 0.

    python benchmarks/region_power.py --splits 5 --exact 6 --oc 12 --threads 1 \\
        --out benchmarks/results/region_power.json --plot docs/images/region_power_contrast.png
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffad.data.brain import BAND, brain_slices, same_position_references
from diffad.data.image_ops import ImageSet
from diffad.data.synthetic import lesion_dataset
from diffad.demo.brain import LESIONS, SETTINGS, demo_localizer
from diffad.provenance import write_result
from diffad.selective.comparators import bonferroni_p_value
from diffad.selective.dal import SHOWN_METHODS, SelectiveTest
from diffad.selective.fission import NULLS, null_p_value, null_scale
from diffad.selective.noise import clopper_pearson
from diffad.selective.rank import RANK_PERCENTILE

ALPHA = 0.05
N_CALIBRATION = 52
GROUPS = ("healthy", "lesion_demo", "lesion_bench")


def band(k: int, n: int) -> list[float]:
    """95 % Clopper-Pearson interval of k/n."""
    return list(clopper_pearson(k, n))


def rate(rejected: list[bool]) -> dict[str, Any]:
    k, n = int(sum(rejected)), len(rejected)
    return {"n": n, "rejected": k, "rate": k / n if n else None, "band": band(k, n) if n else None}


def train(localizer: str, images: np.ndarray, verbose: bool, cache: str | None) -> Any:
    """The demo's localiser fitted on ``images``, loaded from ``cache`` when it is there."""
    from diffad.image.localizers import load_localizer

    if cache and Path(cache, "config.json").is_file():
        return load_localizer(cache, device="cpu", verbose=verbose)
    loc = demo_localizer(SETTINGS["full"], 0, verbose, localizer).fit(images)
    if cache:
        loc.save(cache)
    return loc


def image_row(
    tester: SelectiveTest, x: np.ndarray, ref: Any, oc: bool, exact: bool, tile: bool = False
) -> dict[str, Any]:
    """Every statistic of one image (p-values of the nulls are derived from them later)."""
    row: dict[str, Any] = {}
    start = time.perf_counter()
    fis = tester.test_prepared(x, ref, "fission")
    row["fission_seconds"] = time.perf_counter() - start
    row["fission_z"] = fis.z
    row["fission_region"] = fis.region_size
    start = time.perf_counter()
    ranked = tester.test_prepared(x, ref, "rank")
    row["rank_seconds"] = time.perf_counter() - start
    row["rank_z"], row["rank_p"], row["rank_region"] = ranked.z, ranked.p_value, ranked.region_size
    if tester.selection == "shown":  # the other tests trace the region map
        return row
    start = time.perf_counter()
    naive = tester.test_prepared(x, ref, "naive")
    row["naive_seconds"] = time.perf_counter() - start
    row["naive_z"] = naive.z
    row["region"] = naive.region_size
    row["bonferroni_p"] = None if naive.z is None else bonferroni_p_value(naive.z, x.size)
    if oc:
        start = time.perf_counter()
        row["oc_p"] = tester.test_prepared(x, ref, "oc").p_value
        row["oc_seconds"] = time.perf_counter() - start
    if tile:
        start = time.perf_counter()
        tester.termination = "decision"  # each tile decides at α / n_tiles
        try:
            res = tester.test_prepared(x, ref, "tile")
        finally:
            tester.termination = "precision"
        row["tile_seconds"] = time.perf_counter() - start
        row["tile_bounds"] = None if res.p_value_bounds is None else list(res.p_value_bounds)
        row["tile_z"] = res.z
    if exact:
        start = time.perf_counter()
        par = tester.test_prepared(x, ref, "parametric")
        row["parametric_seconds"] = time.perf_counter() - start
        row["parametric_bounds"] = None if par.p_value_bounds is None else list(par.p_value_bounds)
    return row


def decisions(rows: list[dict], tester: SelectiveTest) -> dict[str, list[bool]]:
    """Rejections at α of each method/null over ``rows`` (no region: not rejected)."""
    out: dict[str, list[bool]] = {}
    for null in NULLS:
        null_z = None if null == "gaussian" else tester.null_z_["fission"]
        out[f"fission_{null}"] = [
            bool(r["fission_z"] is not None and null_p_value(r["fission_z"], null, null_z) < ALPHA)
            for r in rows
        ]
    for null in ("gaussian", "conformal") if "naive_z" in rows[0] else ():
        null_z = None if null == "gaussian" else tester.null_z_["naive"]
        out[f"naive_{null}"] = [
            bool(r["naive_z"] is not None and null_p_value(r["naive_z"], null, null_z) < ALPHA)
            for r in rows
        ]
    out["rank"] = [bool(r["rank_p"] is not None and r["rank_p"] < ALPHA) for r in rows]
    traced = [r for r in rows if "oc_p" in r]
    if traced:
        out["oc"] = [bool(r["oc_p"] is not None and r["oc_p"] < ALPHA) for r in traced]
    if "bonferroni_p" in rows[0]:
        out["bonferroni"] = [
            bool(r["bonferroni_p"] is not None and r["bonferroni_p"] < ALPHA) for r in rows
        ]
    tiled = [r for r in rows if "tile_bounds" in r]
    if tiled:
        out["tile"] = [
            bool(r["tile_bounds"] is not None and r["tile_bounds"][1] < ALPHA) for r in tiled
        ]
    exact = [r for r in rows if "parametric_bounds" in r]
    if exact:
        out["parametric"] = [
            bool(r["parametric_bounds"] is not None and r["parametric_bounds"][1] < ALPHA)
            for r in exact
        ]
    return out


def run_split(
    loc: Any,
    colin: ImageSet,
    matched: np.ndarray,
    split: int,
    tau: float,
    n_exact: int,
    noise_kinds: tuple[str, ...],
    n_oc: int,
    selection: str,
    rank_percentile: float,
    n_tile: int = 0,
) -> dict[str, Any]:
    """One random calibration/test split, both references."""
    perm = np.random.default_rng(split).permutation(len(colin))
    cal, test = np.sort(perm[:N_CALIBRATION]), np.sort(perm[N_CALIBRATION:])
    healthy = colin.images[test]
    masks = colin.masks[test]
    groups = {
        "healthy": healthy,
        "lesion_demo": lesion_dataset(healthy, masks, seed=split, **LESIONS)[0],
        "lesion_bench": lesion_dataset(healthy, masks, donors=colin.images[cal], seed=split)[0],
    }
    out: dict[str, Any] = {"split": split, "calibration": cal.tolist(), "test": test.tolist()}
    for ref_kind in ("mean", "matched"):
        refs = matched if ref_kind == "matched" else None
        checks = {}
        for kind in noise_kinds:
            probe = SelectiveTest(
                loc, device="cpu", tau=tau, random_state=split, selection=selection
            ).calibrate(
                colin.images[cal], None if refs is None else refs[cal], check_fraction=0.05,
                noise_kind=kind, rank_percentile=rank_percentile,
            )  # fmt: skip
            checks[kind] = probe.noise_check_.to_dict()
        tester = probe  # the last kind: the default estimator
        rows = {}
        for name, images in groups.items():
            rows[name] = [
                image_row(
                    tester,
                    images[i].astype(np.float64),
                    None if refs is None else refs[test[i]].astype(np.float64),
                    oc=split == 0 and i < n_oc,
                    exact=split == 0 and i < n_exact,
                    tile=i < n_tile and ref_kind == "matched",
                )  # fmt: skip
                for i in range(len(images))
            ]
        out[ref_kind] = {
            "noise_check": checks,
            "lam": tester.lam_,
            "lam_fission": tester.lam_fission_,
            "lam_rank": tester.lam_rank_,
            "null_scale_fission": null_scale(tester.null_z_["fission"]),
            "null_z": {
                k: [None if np.isnan(v) else float(v) for v in z] for k, z in tester.null_z_.items()
            },
            "decisions": {g: decisions(r, tester) for g, r in rows.items()},
            "rows": rows,
        }
    return out


def contrast_power(
    loc: Any,
    colin: ImageSet,
    matched: np.ndarray,
    tau: float,
    methods: list[str],
    levels: list[float],
    selection: str,
    rank_percentile: float,
) -> dict[str, Any]:
    """Rejection rate of each test (one of ``CURVE_TESTS``; matched reference) against the demo
    generator's contrast δ, on the test slices of split 0."""
    perm = np.random.default_rng(0).permutation(len(colin))
    cal, test = np.sort(perm[:N_CALIBRATION]), np.sort(perm[N_CALIBRATION:])
    tester = SelectiveTest(loc, device="cpu", tau=tau, selection=selection)
    tester.calibrate(
        colin.images[cal], matched[cal], check_fraction=0.05, rank_percentile=rank_percentile
    )
    if selection == "shown":  # the other tests trace the region map
        methods = [key for key in methods if method_and_null(key)[0] in SHOWN_METHODS]
    out: dict[str, Any] = {key: {} for key in methods}
    for delta in levels:
        lesions = {**LESIONS, "delta": (delta, delta)}
        images = lesion_dataset(colin.images[test], colin.masks[test], seed=0, **lesions)[0]
        for key in methods:
            method, null = method_and_null(key)
            res = [
                tester.test_prepared(x.astype(np.float64), matched[j], method, null)
                for x, j in zip(images, test, strict=True)
            ]
            out[key][str(delta)] = rate([r.p_value is not None and r.p_value < ALPHA for r in res])
    return out


def summarise(splits: list[dict]) -> dict[str, Any]:
    """Rates over all splits per reference, group and method, with bands."""
    out: dict[str, Any] = {}
    for ref_kind in ("mean", "matched"):
        table: dict[str, Any] = {}
        for group in GROUPS:
            methods = splits[0][ref_kind]["decisions"][group]
            table[group] = {
                m: rate([d for s in splits for d in s[ref_kind]["decisions"][group].get(m, [])])
                for m in methods
            }
        out[ref_kind] = table
    return out


def plot(contrast: dict[str, Any], path: str) -> None:
    """Share of lesion slices rejected against δ, one line (with its band) per test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for key, curve in contrast.items():
        levels = [float(k) for k in curve]
        rates = [curve[k]["rate"] for k in curve]
        lo = [curve[k]["band"][0] for k in curve]
        hi = [curve[k]["band"][1] for k in curve]
        (line,) = ax.plot(levels, rates, "o-", label=METHOD_LABELS.get(key, key))
        ax.fill_between(levels, lo, hi, alpha=0.15, color=line.get_color())
    ax.axhline(ALPHA, color="grey", ls="--", lw=1, label=f"α = {ALPHA}")
    ax.set_xlabel("SYNTHETIC lesion contrast δ (demo generator)")
    ax.set_ylabel("share of lesion slices rejected")
    ax.set_title("matched reference; bands: 95 % Clopper-Pearson", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


METHOD_LABELS = {
    "rank": "rank: most extreme component among healthy images (conformal; the default)",
    "fission_scaled": "fission, scaled null",
    "fission_conformal": "fission, conformal null",
    "fission_gaussian": "fission, Gaussian null",
    "naive_conformal": "region at λ (p99), its z among healthy images (conformal)",
    "naive_gaussian": "naive (invalid)",
    "oc": "exact, over-conditioned (OC)",
    "parametric": "exact DAL-Test",
    "tile": "exact, tile event (Bonferroni over 16 tiles)",
    "bonferroni": "Bonferroni",
}


CURVE_TESTS = ("rank", "fission_scaled", "fission_conformal", "fission_gaussian",
               "naive_conformal", "naive_gaussian")  # fmt: skip


def method_and_null(key: str) -> tuple[str, str]:
    """(method, null) of a contrast-curve test: ``rank`` or e.g. ``fission_scaled``."""
    if key not in CURVE_TESTS:
        raise ValueError(f"a contrast-curve test is one of {CURVE_TESTS}, got {key!r}")
    return ("rank", "conformal") if key == "rank" else tuple(key.split("_"))  # type: ignore


def markdown(result: dict[str, Any]) -> str:
    """The doc tables of a result file: rejection rates with bands, per reference."""

    def cell(r: dict[str, Any]) -> str:
        if not r["n"]:
            return "—"
        lo, hi = r["band"]
        return f"{r['rate']:.3f} [{lo:.3f}, {hi:.3f}] (n = {r['n']})"

    lines = []
    for ref_kind, table in result["summary"].items():
        lines += [f"reference: {ref_kind}", "", "| test | " + " | ".join(GROUPS) + " |",
                  "|---|" + "---|" * len(GROUPS)]  # fmt: skip
        for method, label in METHOD_LABELS.items():
            if method in table["healthy"]:
                row = [cell(table[g][method]) for g in GROUPS]
                lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "noise-model check: variance of standardised fixed-disc means, median over the splits "
        "[smallest, largest]", "",
        "| reference | Σ estimator | r = 1 | r = 2 | r = 4 |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for ref_kind in result["summary"]:
        checks = [s[ref_kind]["noise_check"] for s in result["splits"]]
        for kind in checks[0]:
            values = np.array([c[kind]["variance"] for c in checks])
            cells = [f"{np.median(v):.2f} [{v.min():.2f}, {v.max():.2f}]" for v in values.T]
            lines.append(f"| {ref_kind} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--localizer", choices=("ddpm", "disyre", "ssim-ens"), default="ddpm",
        help="ssim-ens: the DDPM's SSIM-ens map, tested with selection='shown' (rank, fission)",
    )  # fmt: skip
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--exact", type=int, default=0, help="exact DAL-Test on this many per group")
    p.add_argument("--oc", type=int, default=12, help="OC p-values on this many per group")
    p.add_argument(
        "--tile", type=int, default=0,
        help="tile-test p-values (termination decision) on this many per group and split, "
        "matched reference",
    )  # fmt: skip
    p.add_argument(
        "--contrast-methods", default="rank,fission_scaled,naive_conformal",
        help=f"the tests of the contrast curve, from {', '.join(CURVE_TESTS)}",
    )  # fmt: skip
    p.add_argument("--contrasts", default="0.1,0.2,0.3,0.5,0.8", help="'' for none")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--rank-percentile", type=float, default=RANK_PERCENTILE,
        help="percentile of healthy map pixels that becomes λ_rank (calibrate())",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="result JSON (with --table: the one to read)")
    p.add_argument("--table", action="store_true", help="print the doc tables of --out")
    p.add_argument("--plot", default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--model-cache", default=None, help="folder to keep the trained model in")
    args = p.parse_args(argv)
    if args.table:
        import json

        print(markdown(json.loads(Path(args.out).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    command = "python benchmarks/region_power.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    size = SETTINGS["full"]["size"]
    train_set = brain_slices("mni152", size, slice_fraction=BAND)
    colin = brain_slices("colin27", size, slice_fraction=BAND)
    matched = same_position_references(colin.names, colin.names, train_set)
    start = time.perf_counter()
    loc = train(
        "ddpm" if args.localizer == "ssim-ens" else args.localizer, train_set.images,
        not args.quiet, args.model_cache,
    )  # fmt: skip
    selection = "region"
    if args.localizer == "ssim-ens":
        loc.set_params(score="ssim-ens")
        selection = "shown"
    result: dict[str, Any] = {
        "command": command,
        "alpha": ALPHA,
        "localizer": args.localizer,
        "tau": args.tau,
        "selection": selection,
        "rank_percentile": args.rank_percentile,
        "train_seconds": time.perf_counter() - start,
        "n_calibration": N_CALIBRATION,
        "n_test_per_split": len(colin) - N_CALIBRATION,
    }
    splits: list[dict[str, Any]] = []
    for s in range(args.splits):
        splits.append(
            run_split(
                loc,
                colin,
                matched,
                s,
                args.tau,
                args.exact,
                ("local", "tapered"),
                args.oc,
                selection, args.rank_percentile, args.tile,
            )  # fmt: skip
        )
        result["splits"] = splits
        result["summary"] = summarise(splits)
        write_result(args.out, result, command=command)
        print(f"split {s} done", flush=True)
    levels = [float(v) for v in args.contrasts.split(",") if v]
    if levels:
        result["contrast"] = contrast_power(
            loc, colin, matched, args.tau, args.contrast_methods.split(","), levels, selection,
            args.rank_percentile,
        )  # fmt: skip
        write_result(args.out, result, command=command)
    if args.plot and "contrast" in result:
        plot(result["contrast"], args.plot)
    for ref_kind, table in result.get("summary", {}).items():
        for group, methods in table.items():
            line = ", ".join(f"{m} {v['rate']:.3f}" for m, v in methods.items() if v["n"])
            print(f"{ref_kind} {group}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
