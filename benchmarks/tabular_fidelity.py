"""Fidelity: our ROC-AUC vs the DTE paper's published ROC-AUC on ADBench sets.

Two sub-commands:

``run``
    Runs ``diffad.bench.tabular.run_tabular`` over every ``.npz`` of ``--data-dir`` for one
    protocol, a list of methods and seeds, and writes
    ``benchmarks/results/tabular_fidelity_<protocol>_<tag>.json`` after every data set (so a
    killed run keeps its finished sets; ``--resume`` continues it).
``summarize``
    Reads every ``tabular_fidelity_*.json`` and writes ``tabular_fidelity.md`` and
    ``tabular_fidelity_summary.json``: per set ours vs published, and per method and
    protocol the share of sets within +-2 ROC-AUC points and the mean difference.

Examples (from the repository root; one thread, nice'd, as on a shared 2-core machine)::

    nice -n 10 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/tabular_fidelity.py \
        run --protocol semi-paper --methods dte-np,knn,iforest,lof,ocsvm --tag fast
    python benchmarks/tabular_fidelity.py summarize
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffad.provenance import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "adbench" / "Classical"


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from diffad.bench.methods import NEURAL_METHODS, parse_methods
    from diffad.bench.tabular import run_tabular, select_files
    from diffad.provenance import machine_info

    torch.set_num_threads(args.threads)
    methods = parse_methods(args.methods)
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = [d for d in (args.datasets or "").split(",") if d.strip()] or None
    files = select_files(args.data_dir, datasets)
    params: dict[str, dict] = {}
    if args.epochs is not None:
        params = {m: {"epochs": args.epochs} for m in NEURAL_METHODS}
    variants = []
    if args.dte_c_double_softmax:
        params.setdefault("dte-c", {})["double_softmax"] = True
        variants.append("double softmax")
    if args.dte_ig_beta_link != "square":
        params.setdefault("dte-ig", {})["beta_link"] = args.dte_ig_beta_link
        variants.append(f"{args.dte_ig_beta_link} link")
    if args.dte_ig_schedule != "auto":
        params.setdefault("dte-ig", {})["training_schedule"] = args.dte_ig_schedule
        variants.append(f"{args.dte_ig_schedule} schedule")
    variant = ", ".join(variants) or None
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"tabular_fidelity_{args.protocol}_{args.tag}.json"
    records: list[dict] = []
    if args.resume and out.is_file():
        records = json.loads(out.read_text())["results"]
    payload = {
        "command": "python benchmarks/tabular_fidelity.py " + shlex.join(sys.argv[1:]),
        "machine": machine_info(),
        "protocol": args.protocol,
        "data_dir": str(Path(args.data_dir)),
        "methods": methods,
        "seeds": seeds,
        "method_params": params,
        "variant": variant,
        "complete": False,
        "results": records,
    }
    started = time.time()
    for path in files:
        have = {(r["method"], r["seed"]) for r in records if r["file"] == path.name}
        todo = [m for m in methods if any((m, s) not in have for s in seeds)]
        if not todo:
            continue
        records[:] = [r for r in records if not (r["file"] == path.name and r["method"] in todo)]
        records.extend(
            run_tabular(
                [path],
                args.protocol,
                todo,
                seeds,
                device=args.device,
                method_params=params,
                verbose=not args.quiet,
            )
        )
        payload["elapsed_s"] = time.time() - started
        write_json(out, payload)
        print(f"{path.name}: done ({time.time() - started:.0f} s)", flush=True)
    payload["complete"] = True
    payload["elapsed_s"] = time.time() - started
    write_json(out, payload)
    print(f"wrote {out}")
    return 0


def _stats(rows: list[dict]) -> dict:
    with_pub = [r for r in rows if r["published"] is not None]
    if not with_pub:
        return {"n_sets": 0}
    diffs = np.array([r["diff"] for r in with_pub])
    return {
        "n_sets": len(with_pub),
        "within_2": int(np.sum(np.abs(diffs) <= 2.0)),
        "share_within_2": float(np.mean(np.abs(diffs) <= 2.0)),
        "mean_diff": float(diffs.mean()),
        "mean_ours": float(np.mean([r["roc_auc_mean"] for r in with_pub])),
        "mean_published": float(np.mean([r["published"] for r in with_pub])),
    }


def _seeds_label(records) -> str:
    """The seeds behind a method's set means, e.g. ``0,1,2`` or, when a run was cut short and
    the sets have different seeds, ``0,1,2 (20 sets); 0 (13 sets)``."""
    by_family: dict[str, set] = defaultdict(set)
    for r in records:
        by_family[r["family"]].add(r["seed"])
    groups: dict[tuple, int] = defaultdict(int)
    for seeds in by_family.values():
        groups[tuple(sorted(seeds))] += 1
    if len(groups) == 1:
        return ",".join(str(s) for s in next(iter(groups)))
    parts = sorted(groups.items(), key=lambda kv: (-len(kv[0]), kv[0]))
    return "; ".join(f"{','.join(str(s) for s in k)} ({n} sets)" for k, n in parts)


def _label(key: str) -> str:
    """Table name of a method key: ``dte-c`` -> ``DTE-C``, ``dte-c|double softmax`` ->
    ``DTE-C (double softmax)``."""
    from diffad.bench.methods import LABELS

    method, _, variant = key.partition("|")
    return LABELS[method] + (f" ({variant})" if variant else "")


def cmd_summarize(args: argparse.Namespace) -> int:
    from diffad.bench.methods import METHODS
    from diffad.bench.tabular import summarize

    files = sorted(p for p in RESULTS.glob("tabular_fidelity_*.json") if "summary" not in p.name)
    if not files:
        raise SystemExit(f"no tabular_fidelity_*.json in {RESULTS}")
    # (protocol, method key) -> records; a later file overrides an earlier one for the same
    # keys. A run with non-default settings (its JSON's "variant", e.g. DTE-C with the double
    # softmax) is kept apart under the key "<method>|<variant>" and never mixed with defaults.
    by_pm: dict[tuple[str, str], dict[tuple, dict]] = defaultdict(dict)
    sources: dict[tuple[str, str], set] = defaultdict(set)
    for f in files:
        payload = json.loads(f.read_text())
        variant = payload.get("variant")
        for r in payload["results"]:
            key = (r["protocol"], r["method"] if not variant else f"{r['method']}|{variant}")
            by_pm[key][(r["file"], r["seed"])] = r
            sources[key].add(f.name)
    summary: dict = {"sources": [f.name for f in files], "protocols": {}}
    lines = ["# Tabular fidelity: ours vs published ROC-AUC (%)", ""]
    lines.append(
        "Generated by `python benchmarks/tabular_fidelity.py summarize` from "
        + ", ".join(f"`{f.name}`" for f in files)
        + ". Ours: mean ± std over seeds (std ddof=0). diff = ours − published."
    )
    for protocol in ("semi-paper", "semi", "unsup"):
        variants = sorted(k for (p, k) in by_pm if p == protocol and "|" in k)
        methods = [m for m in METHODS if (protocol, m) in by_pm]
        methods += [k for m in METHODS for k in variants if k.split("|")[0] == m]
        if not methods:
            continue
        per_method = {}
        table: dict[str, dict[str, dict]] = defaultdict(dict)
        for m in methods:
            rows = summarize(list(by_pm[(protocol, m)].values()), protocol=protocol)
            for r in rows:
                table[r["family"]][m] = r
            st = _stats(rows)
            st["seeds"] = sorted({s for (_, s) in by_pm[(protocol, m)]})
            st["seeds_label"] = _seeds_label(by_pm[(protocol, m)].values())
            st["sources"] = sorted(sources[(protocol, m)])
            per_method[m] = st
            per_method[m]["rows"] = rows
        summary["protocols"][protocol] = per_method
        lines += ["", f"## Protocol `{protocol}`", ""]
        lines.append(
            "| method | seeds | sets | within ±2 | mean ours | mean published | mean diff |"
        )
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for m in methods:
            st = per_method[m]
            if st["n_sets"] == 0:
                continue
            lines.append(
                f"| {_label(m)} | {st['seeds_label']} | {st['n_sets']} | "
                f"{st['within_2']}/{st['n_sets']} "
                f"({100 * st['share_within_2']:.0f} %) | {st['mean_ours']:.2f} | "
                f"{st['mean_published']:.2f} | {st['mean_diff']:+.2f} |"
            )
        lines += ["", "| data set | " + " | ".join(_label(m) for m in methods) + " |"]
        lines.append("|---|" + "---:|" * len(methods))
        for family in sorted(table, key=str.lower):
            cells = []
            for m in methods:
                r = table[family].get(m)
                if r is None:
                    cells.append("")
                elif r["published"] is None:
                    cells.append(f"{r['roc_auc_mean']:.1f} (–)")
                else:
                    cells.append(f"{r['roc_auc_mean']:.1f} vs {r['published']:.1f}")
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
    (RESULTS / "tabular_fidelity.md").write_text("\n".join(lines) + "\n")
    write_json(RESULTS / "tabular_fidelity_summary.json", summary)
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run one protocol and write its JSON")
    run.add_argument("--data-dir", default=str(DEFAULT_DATA))
    run.add_argument("--datasets", default=None)
    run.add_argument("--protocol", default="semi-paper", choices=["semi-paper", "semi", "unsup"])
    run.add_argument("--methods", default="dte-np,knn,iforest,lof,ocsvm")
    run.add_argument("--seeds", default="0,1,2,3,4")
    run.add_argument("--tag", default="fast", help="suffix of the output file name")
    run.add_argument("--epochs", type=int, default=None)
    run.add_argument(
        "--dte-c-double-softmax",
        action="store_true",
        help="DTE-C with double_softmax=True (the published code's loss); the JSON records "
        "it as variant 'double softmax' and the summary keeps it apart from the defaults",
    )
    run.add_argument(
        "--dte-ig-beta-link",
        choices=["square", "softplus"],
        default="square",
        help="DTE-IG's map from network output to beta (default: the published square); any "
        "other is recorded as variant '<link> link' and kept apart in the summary",
    )
    run.add_argument(
        "--dte-ig-schedule",
        choices=["auto", "paper", "fast"],
        default="auto",
        help="DTE-IG's training schedule (default: auto); any other is recorded as variant "
        "'<name> schedule' and kept apart in the summary",
    )
    run.add_argument("--device", default="auto")
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--resume", action="store_true", help="keep finished sets of --tag")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=cmd_run)
    summ = sub.add_parser("summarize", help="tables from every tabular_fidelity_*.json")
    summ.set_defaults(func=cmd_summarize)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
