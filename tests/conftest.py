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
