"""Where a result comes from: the command and machine recorded with it, and its JSON file.

Every benchmark result, ``diffad bench`` output and ``diffad report`` run folder records the
command line that produced it and the machine it ran on (:func:`machine_info`);
:func:`write_result` writes a JSON result with both, :func:`write_json` any JSON file, each
atomically.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _first_cpu() -> dict[str, str]:
    """The first processor's ``key: value`` entries of /proc/cpuinfo (empty if unreadable)."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    return _first_cpu().get("model name") or platform.processor() or platform.machine()


def cpu_details() -> dict:
    """CPU family, model, stepping, clock and widest vector extension from /proc/cpuinfo.

    Two machines that both call themselves "AMD EPYC" can differ by CPU generation, and the
    speed ratio of a GEMM-bound engine to an interpreter-bound one moves with it, so every
    timing records which one it ran on. Empty where /proc/cpuinfo is unreadable.
    """
    cpu = _first_cpu()
    fields = {"cpu family": "family", "model": "model", "stepping": "stepping", "cpu MHz": "mhz"}
    out = {name: cpu[key] for key, name in fields.items() if key in cpu}
    if "flags" in cpu:
        flags = set(cpu["flags"].split())
        out["vector"] = next(
            (f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "other"
        )
    return out


def machine_info() -> dict:
    """Command, cores, CPU, load, Python and library versions, torch threads, CUDA.

    The load average is recorded because timings on a shared machine are only comparable
    together with it.
    """
    import numpy
    import sklearn
    import torch

    info = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_details": cpu_details(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    try:
        import pyod

        info["pyod"] = pyod.__version__
    except ImportError:  # pragma: no cover - pyod is a dependency
        pass
    return info


def write_json(path: str | Path, payload: dict[str, Any], indent: int = 2) -> Path:
    """Write ``payload`` as JSON atomically (temporary file, then rename).

    Long benchmarks rewrite their result file after every unit of work; the rename means a
    run stopped mid-write never leaves a truncated file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=indent))
    os.replace(tmp, path)
    return path


def write_result(
    path: str | Path, payload: dict[str, Any], command: str | None = None, indent: int = 2
) -> Path:
    """Write a result as JSON (atomically) with the command and machine that produced it.

    Parameters
    ----------
    path : str or Path
        The JSON file; its folder is created.
    payload : dict
        The result. Its ``"command"`` and ``"machine"`` entries are kept when present;
        otherwise ``command`` (default: this process's command line) and
        :func:`machine_info` are added. ``payload`` itself is not changed.
    command : str, optional
        The command line to record, e.g. the script and its arguments as a user types them.
    indent : int
        JSON indentation.

    Returns
    -------
    Path
        ``path``.
    """
    out = dict(payload)
    if "machine" not in out:
        out["machine"] = machine_info()
    if "command" not in out:
        out["command"] = command or out["machine"]["command"]
    return write_json(path, out, indent=indent)
