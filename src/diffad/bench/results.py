"""Writing benchmark result files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
