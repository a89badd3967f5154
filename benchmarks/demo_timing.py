"""Wall time of ``diffad demo``: first run (empty cache), rerun (model and p-values cached),
rerun with the cached model but no cached p-values, and ``--quick``.

Each run is a fresh ``diffad`` process with its own cache folder, as a new user would start it.
Records the wall seconds, the last line printed and the report's headline numbers.

    python benchmarks/demo_timing.py --out benchmarks/results/demo_timing.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from diffad.provenance import machine_info, write_json


def run(argv: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    out = Path(argv[argv.index("--out") + 1])
    report = json.loads((out / "report.json").read_text())
    images = report["images"]
    return {
        "argv": " ".join(["diffad", *argv[3:]]),
        "wall_seconds": round(seconds, 1),
        "last_line": proc.stdout.strip().splitlines()[-1].replace(str(out.parent), "TMP"),
        "images": len(images),
        "with_synthetic_lesion": sum(bool(e["has_lesion"]) for e in images),
        "bh_selected": sum(bool(e["bh_selected"]) for e in images),
        "bh_selected_with_lesion": sum(bool(e["bh_selected"] and e["has_lesion"]) for e in images),
        "regions_tested": sum(e["p_selective"] is not None for e in images),
        "selective_rejected": sum(bool(e["rejected"]) for e in images),
        "naive_below_alpha": sum(
            e["p_naive"] is not None and e["p_naive"] < report["alpha"] for e in images
        ),
        "calibration": {k: report["calibration"][k] for k in ("n_images", "n_rejected", "band")},
        "images_table": [
            {
                k: e[k]
                for k in (
                    "name",
                    "has_lesion",
                    "p_conformal",
                    "bh_selected",
                    "region_pixels",
                    "p_selective",
                    "p_naive",
                    "rejected",
                )
            }
            for e in images
        ],  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    diffad = [sys.executable, "-m", "diffad"]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra, cache in (
            ("first_run", [], "full"),
            ("cached_rerun", [], "full"),
            ("cached_model_fresh_p_values", [], "full"),
            ("quick_first_run", ["--quick"], "quick"),
        ):
            if name == "cached_model_fresh_p_values":
                for done in (Path(tmp) / cache).glob("*/tests.jsonl"):
                    done.unlink()
            out = Path(tmp) / name
            cmd = [*diffad, "demo", "--quiet", "--out", str(out), "--cache", str(Path(tmp) / cache)]
            runs[name] = run(cmd + extra)
            print(name, runs[name]["wall_seconds"], "s", flush=True)
    write_json(
        args.out,
        {
            "command": "python benchmarks/demo_timing.py --out " + args.out,
            "machine": machine_info(),
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
