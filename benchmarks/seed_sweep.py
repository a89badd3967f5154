"""Rerun the tests that train models under many seeds and torch thread counts.

Each combination runs ``pytest`` in a fresh process with ``DIFFAD_TEST_SEED`` (added to the
seeds of those tests, see ``tests/conftest.py``) and ``DIFFAD_TEST_THREADS`` set, and
records how many tests passed and which failed. A test that passes only for one lucky seed
or one thread count shows up here.

Usage::

    python benchmarks/seed_sweep.py --seeds 0-9 --threads 1,2 \\
        --out benchmarks/results/test_seed_sweep.json
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from diffad.provenance import machine_info, write_json  # noqa: E402

#: The test files whose tests train a model (or fit a detector) and assert on its quality.
TRAINING_TESTS = (
    "tests/test_tabular_common.py",
    "tests/test_tabular_dte_c.py",
    "tests/test_tabular_dte_ig.py",
    "tests/test_tabular_ddpm.py",
    "tests/test_tabular_dte_np.py",
    "tests/test_localizer.py",
    "tests/test_estimator_checks.py",
    "tests/test_conformal.py",
    "tests/test_bench_tabular.py",
    "tests/test_cli_image.py",
    "tests/test_cli_selective.py",
    "tests/test_demo.py",
)


def parse_range(spec: str) -> list[int]:
    """``"0-9"`` or ``"0,3,5"`` → list of ints."""
    if re.fullmatch(r"\d+-\d+", spec):
        lo, hi = map(int, spec.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in spec.split(",") if v.strip()]


def run_once(seed: int, threads: int, files: list[str]) -> dict:
    env = {**os.environ, "DIFFAD_TEST_SEED": str(seed), "DIFFAD_TEST_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *files],
        cwd=HERE.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|error|errors)", summary)}
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
    return {
        "seed": seed,
        "threads": threads,
        "exit_code": proc.returncode,
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
        "failed_tests": failed,
        "summary": summary,
        "seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    files = [f for f in TRAINING_TESTS if (HERE.parent / f).is_file()]
    runs = []
    for threads in parse_range(args.threads):
        for seed in parse_range(args.seeds):
            runs.append(run_once(seed, threads, files))
            r = runs[-1]
            print(f"seed {seed} threads {threads}: {r['summary']}", flush=True)
            write_json(
                args.out,
                {
                    "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                    "machine": machine_info(),
                    "test_files": files,
                    "combinations": len(runs),
                    "all_passed": all(r["exit_code"] == 0 for r in runs),
                    "runs": runs,
                },
            )
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
