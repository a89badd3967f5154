"""The command and machine record written with every result (``diffad.provenance``)."""

import json
from pathlib import Path

from diffad import provenance


def test_cpu_details_reads_family_and_vector_level(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text(
        "processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
        "stepping\t: 1\ncpu MHz\t\t: 2596.1\nflags\t\t: fpu sse4_2 avx avx2 avx512f\n"
        "processor\t: 1\ncpu family\t: 99\nflags\t\t: fpu\n"
    )
    real = Path

    def fake_path(p, *a):
        return fake if str(p) == "/proc/cpuinfo" else real(p, *a)

    monkeypatch.setattr(provenance, "Path", fake_path)
    details = provenance.cpu_details()
    # The first processor's entries win; the widest extension present is named.
    assert details == {
        "family": "26",
        "model": "2",
        "stepping": "1",
        "mhz": "2596.1",
        "vector": "avx512f",
    }


def test_cpu_details_empty_when_unreadable(monkeypatch):
    monkeypatch.setattr(provenance, "Path", lambda p, *a: Path("/nonexistent/cpuinfo"))
    assert provenance.cpu_details() == {}


def test_machine_info_records_cpu_details():
    info = provenance.machine_info()
    assert isinstance(info["cpu_details"], dict)


def test_write_result_records_command_and_machine(tmp_path):
    out = provenance.write_result(tmp_path / "s" / "r.json", {"x": 1}, command="python b.py --n 2")
    doc = json.loads(out.read_text())
    assert doc["x"] == 1 and doc["command"] == "python b.py --n 2"
    assert isinstance(doc["machine"]["cpu_details"], dict)
    assert not list(out.parent.glob("*.tmp"))


def test_write_result_keeps_recorded_command_and_machine(tmp_path):
    payload = {"command": "diffad bench tabular", "machine": {"cores": 2}}
    doc = json.loads(provenance.write_result(tmp_path / "r.json", payload).read_text())
    assert doc == payload
