"""ResultLog: finished region tests survive an interruption and are reused only when valid."""

from __future__ import annotations

import numpy as np

from diffad.selective.result import SelectiveTestResult
from diffad.selective.result_log import ResultLog, from_record, to_record


def _result(seed: int) -> SelectiveTestResult:
    rng = np.random.default_rng(seed)
    region = rng.random((1, 6, 6)) > 0.7
    return SelectiveTestResult(
        "parametric", float(rng.random()), 0.01, 1.5, 2.1, region, int(region.sum()),
        intervals=np.array([[-1.0, 0.5], [1.0, 3.0]]), n_pieces=7, n_network_calls=12,
        seconds=0.3, p_value_bounds=(0.1, 0.2),
    )  # fmt: skip


def test_record_round_trip_is_exact():
    res = _result(0)
    back = from_record(to_record(res))
    np.testing.assert_array_equal(back.region, res.region)
    np.testing.assert_array_equal(back.intervals, res.intervals)
    assert back.p_value == res.p_value and back.p_value_bounds == res.p_value_bounds
    assert (back.region_size, back.n_pieces, back.method) == (res.region_size, 7, "parametric")
    assert len(to_record(res)["region"]["index"]) == res.region_size  # compact: indices only


def test_log_resumes_keeps_errors_and_ignores_other_settings(tmp_path):
    path = tmp_path / "run" / "log.jsonl"
    log = ResultLog(path, {"lam": 0.3})
    log.put("a", _result(1))
    log.put("b", "the observed statistic is not in its own truncation set")
    with path.open("a") as fh:
        fh.write('{"settings": "cut off by an interrupt')  # a torn last line
    again = ResultLog(path, {"lam": 0.3})
    assert len(again) == 2 and again.get("b").startswith("the observed")
    assert again.get("a").p_value == _result(1).p_value
    calls = []
    assert again.get_or_run("a", lambda: calls.append(1)).region_size == _result(1).region_size
    assert again.get_or_run("c", lambda: _result(2)).p_value == _result(2).p_value
    assert not calls and len(ResultLog(path, {"lam": 0.3})) == 3
    assert len(ResultLog(path, {"lam": 0.4})) == 0  # other settings: nothing reused
