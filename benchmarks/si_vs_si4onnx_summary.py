"""Pool several ``si_vs_si4onnx.py`` result files (same D, disjoint image seeds) into one.

Agreement is pooled over every image that has both diffad ``exact`` and si4onnx
``exhaustive`` p-values, and separately over every image that has both engines' ``default``
p-values (both stop at precision 1e-3); speed medians are pooled over every image that has
the mode.

Usage::

    python benchmarks/si_vs_si4onnx_summary.py --out benchmarks/results/si_vs_si4onnx_d8_all.json \\
        benchmarks/results/si_vs_si4onnx_d8*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from diffad.provenance import write_json


def default_agreement(per_image: list[dict]) -> dict:
    """How far the two engines' default-mode p-values lie apart on the images of one run.

    Both stop once p is bracketed to 1e-3, so they may differ by up to about that much;
    ``each_inside_other_bracket`` says whether each p lies in the other engine's bracket.
    """
    diffs, same_region, inside = [], [], []
    for e in per_image:
        d = e.get("diffad", {}).get("default")
        s = e.get("si4onnx", {}).get("default")
        if not d or not s or d.get("p_value") is None or s.get("p_value") is None:
            continue
        diffs.append(abs(d["p_value"] - s["p_value"]))
        same_region.append(
            np.array_equal(np.ravel(d["region"]).astype(bool), np.ravel(s["roi"]).astype(bool))
        )
        lo, hi = d["p_value_bounds"]
        inside.append(lo <= s["p_value"] <= hi and s["inf_p"] <= d["p_value"] <= s["sup_p"])
    return {
        "compared": len(diffs),
        "max_abs_diff": max(diffs, default=None),
        "all_regions_equal": all(same_region) if same_region else None,
        "each_inside_other_bracket": all(inside) if inside else None,
    }


def pooled(files: list[str]) -> dict:
    """Pooled agreement, per-mode median seconds and per-mode totals of seconds and pieces
    (diffad's traced points, si4onnx's ``search_count``) over the images of ``files``."""
    rows, secs, pieces, sizes, images = [], {}, {}, set(), []
    for f in files:
        data = json.loads(Path(f).read_text())
        sizes.add(data["size"])
        images += data["per_image"]
        for e in data["per_image"]:
            comp = e.get("comparison", {})
            if "p_diffad_exact" in comp:
                rows.append(
                    {
                        "file": f,
                        "image": e["image"],
                        "p_diffad": comp["p_diffad_exact"],
                        "p_si4onnx": comp["p_si4onnx_exhaustive"],
                        "abs_diff": comp["abs_diff"],
                        "same_region": comp["same_region"],
                        "intervals_symdiff_length": comp.get("intervals_symdiff_length"),
                    }
                )
            for eng in ("diffad", "si4onnx"):
                for mode, run in e.get(eng, {}).items():
                    if isinstance(run, dict) and "seconds" in run and "p_value" in run:
                        secs.setdefault(f"{eng}_{mode}", []).append(run["seconds"])
                        count = run.get("n_pieces", run.get("search_count"))
                        pieces.setdefault(f"{eng}_{mode}", []).append(count)
    if len(sizes) > 1:
        raise ValueError(f"files mix image sizes {sorted(sizes)}")
    med = {k: float(np.median(v)) for k, v in secs.items()}
    n = {k: len(v) for k, v in secs.items()}

    def ratio(a: str, b: str) -> float | None:
        return med[a] / med[b] if a in med and b in med else None

    return {
        "size": sizes.pop() if sizes else None,
        "files": files,
        "compared": len(rows),
        "p_diffad": [r["p_diffad"] for r in rows],
        "p_si4onnx": [r["p_si4onnx"] for r in rows],
        "max_abs_diff": max((r["abs_diff"] for r in rows), default=None),
        "all_regions_equal": all(r["same_region"] for r in rows) if rows else None,
        "default_modes": default_agreement(images),
        "max_intervals_symdiff_length": max(
            (r["intervals_symdiff_length"] or 0.0 for r in rows), default=None
        ),
        "median_seconds": med,
        "n_timed": n,
        "total_seconds": {k: float(np.sum(v)) for k, v in secs.items()},
        "median_pieces": {k: float(np.median(v)) for k, v in pieces.items()},
        "total_pieces": {k: int(np.sum(v)) for k, v in pieces.items()},
        "speed_ratio_default": ratio("si4onnx_default", "diffad_default"),
        "speed_ratio_exact": ratio("si4onnx_exhaustive", "diffad_exact"),
        "speed_ratio_precision_1e-3": ratio("si4onnx_default", "diffad_precision"),
        "note": "pooled medians mix runs made at different times on a shared machine; the "
        "per-file speed ratios (same run, same images) are the like-for-like ones",
        "rows": rows,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = pooled(args.files)
    write_json(args.out, out, indent=1)
    show = (
        "compared",
        "max_abs_diff",
        "all_regions_equal",
        "default_modes",
        "median_seconds",
        "total_seconds",
        "median_pieces",
        "total_pieces",
    )
    print(json.dumps({k: out[k] for k in show}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
