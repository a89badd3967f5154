"""``benchmarks/si_vs_si4onnx_summary.py``: agreement of the two engines' default-mode p-values."""

from __future__ import annotations

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def summary():
    return load_benchmark("si_vs_si4onnx_summary")


def _image(p_d: float, bounds_d, p_s: float, bounds_s, region_s) -> dict:
    return {
        "diffad": {"default": {"p_value": p_d, "p_value_bounds": bounds_d, "region": [[[0, 1]]]}},
        "si4onnx": {
            "default": {
                "p_value": p_s,
                "inf_p": bounds_s[0],
                "sup_p": bounds_s[1],
                "roi": region_s,
            }
        },
    }


def test_default_agreement_reports_difference_regions_and_brackets(summary):
    images = [
        _image(0.1000, [0.0996, 0.1004], 0.1002, [0.0998, 0.1006], [[0, 1]]),
        _image(0.5000, [0.4995, 0.5005], 0.5003, [0.4999, 0.5008], [[0, 1]]),
        {"diffad": {"default": {"p_value": None}}, "si4onnx": {}},  # no region: left out
    ]
    out = summary.default_agreement(images)
    assert out["compared"] == 2
    assert out["max_abs_diff"] == pytest.approx(3e-4)
    assert out["all_regions_equal"] is True
    assert out["each_inside_other_bracket"] is True


def test_default_agreement_flags_other_regions_and_p_outside_a_bracket(summary):
    images = [_image(0.1000, [0.0996, 0.1004], 0.1010, [0.1005, 0.1015], [[1, 0]])]
    out = summary.default_agreement(images)
    assert out["all_regions_equal"] is False
    assert out["each_inside_other_bracket"] is False
    assert summary.default_agreement([]) == {
        "compared": 0,
        "max_abs_diff": None,
        "all_regions_equal": None,
        "each_inside_other_bracket": None,
    }
