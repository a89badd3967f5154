"""The machine record written next to every benchmark result."""

from pathlib import Path

from diffad.bench import machine


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

    monkeypatch.setattr(machine, "Path", fake_path)
    details = machine.cpu_details()
    # The first processor's entries win; the widest extension present is named.
    assert details == {
        "family": "26",
        "model": "2",
        "stepping": "1",
        "mhz": "2596.1",
        "vector": "avx512f",
    }


def test_cpu_details_empty_when_unreadable(monkeypatch):
    monkeypatch.setattr(machine, "Path", lambda p, *a: Path("/nonexistent/cpuinfo"))
    assert machine.cpu_details() == {}


def test_machine_info_records_cpu_details():
    info = machine.machine_info()
    assert isinstance(info["cpu_details"], dict)
