"""``benchmarks/image_brain.py``: the brain benchmark's command line (no training here)."""

from __future__ import annotations

import argparse

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def image_brain():
    return load_benchmark("image_brain")


def test_options(image_brain):
    parser = argparse.ArgumentParser()
    image_brain.add_arguments(parser)
    args = parser.parse_args(["--size", "32", "--quick", "--methods", "disyre,l1", "--out", "f"])
    assert args.quick and args.size == 32 and args.out == "f"
    assert image_brain.parse_methods(args.methods) == ("disyre", "l1")
    assert image_brain.parse_methods(None) == image_brain.DDPM_METHODS


def test_unknown_method(image_brain):
    with pytest.raises(ValueError, match="unknown method"):
        image_brain.parse_methods("l1,l2")


def test_same_band_as_the_demo(image_brain):
    # The demo takes its slices from brain_split, whose band is diffad.data.brain.BAND.
    from diffad.data.brain import BAND

    assert image_brain.BAND == BAND == (0.25, 0.8)
