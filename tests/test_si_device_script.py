"""``benchmarks/si_device.py --ci``: a seconds-long run that records the device it used."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def si_device():
    return load_benchmark("si_device")


def _run(si_device, tmp_path, device):
    out = tmp_path / f"{device}.json"
    assert si_device.main(["--ci", "--device", device, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_ci_mode_on_cpu_records_its_device(si_device, tmp_path):
    doc = _run(si_device, tmp_path, "cpu")
    assert doc["mode"] == "ci" and doc["device"] == "cpu" and "machine" in doc
    (size,) = doc["sizes"]
    assert size["size"] == 8 and size["tracer_device"] == "cpu" and size["images"] == 1
    row = size["rows"][0]
    assert 0 <= row["p_value"] <= 1 and row["pieces"] == size["mean_pieces_per_p_value"] > 0
    assert size["median_seconds_per_p_value"] == row["wall_seconds"] > 0


def test_a_device_that_is_not_there_is_a_usage_error(si_device, tmp_path):
    with pytest.raises(SystemExit) as stop:
        si_device.main(["--ci", "--device", "tpu", "--out", str(tmp_path / "x.json")])
    assert stop.value.code == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ci_mode_on_cuda_traces_on_the_gpu(si_device, tmp_path):
    doc = _run(si_device, tmp_path, "cuda")
    assert doc["device"] == "cuda" and doc["gpu"]
    assert doc["sizes"][0]["tracer_device"].startswith("cuda")
