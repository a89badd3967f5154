"""Shared test fixtures.

Two environment variables let the seed sweep (``benchmarks/seed_sweep.py``) rerun the
tests that train models under other seeds and thread counts:

- ``DIFFAD_TEST_SEED`` (default 0) is added to every model and data seed of those tests
  (the ``seed`` fixture);
- ``DIFFAD_TEST_THREADS`` (default 1) is the torch thread count of the tests that train
  (the ``torch_threads`` fixture).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

TEST_SEED = int(os.environ.get("DIFFAD_TEST_SEED", "0"))
TEST_THREADS = int(os.environ.get("DIFFAD_TEST_THREADS", "1"))


@pytest.fixture(scope="session")
def seed() -> int:
    """Offset added to the seeds of tests that train models (``DIFFAD_TEST_SEED``)."""
    return TEST_SEED


@pytest.fixture(scope="module")
def torch_threads():
    """Torch threads for training tests (``DIFFAD_TEST_THREADS``, default 1: tiny models run
    fastest single-threaded and avoid OpenMP spin-waits on a busy shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(before)


#: The project's shared ADBench copy (never in this repository): ``../shared/data/adbench`` from
#: the project root, as on every development and CI machine.
SHARED_ADBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "adbench"
#: The three real sets the ADBench tests read: the smallest tabular set, a mid-size one with
#: a published KNN score, and an image-embedding set.
ADBENCH_FILES = {
    "cardio": "Classical/6_cardio.npz",
    "hepatitis": "Classical/15_Hepatitis.npz",
    "toothbrush": "CV_by_ResNet18/MVTec-AD_toothbrush.npz",
}


@pytest.fixture(scope="session")
def adbench(tmp_path_factory) -> Path:
    """A folder with just the three sets of ``ADBENCH_FILES`` (links into the shared copy),
    laid out as ADBench's own; the tests skip, saying where the data is expected, without it."""
    missing = [f for f in ADBENCH_FILES.values() if not (SHARED_ADBENCH / f).is_file()]
    if missing:
        pytest.skip(f"ADBench data not found: expected {SHARED_ADBENCH / missing[0]}")
    root = tmp_path_factory.mktemp("adbench")
    for rel in ADBENCH_FILES.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(SHARED_ADBENCH / rel)
    return root


def load_benchmark(name: str) -> Any:
    """The script ``benchmarks/<name>.py`` imported as a module (benchmarks are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
