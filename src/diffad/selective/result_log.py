"""Region-test results written as they complete, one JSON line each, so nothing is lost.

A long batch of p-values (``diffad test``, the demo) appends every finished result to a
JSON-lines file. Rerun with the same file and the same settings, it takes the finished ones
from the file and computes only the rest; an image whose test failed is kept as an error
record with its message. Lines written under other settings are ignored, never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from diffad.selective.result import SelectiveTestResult


def to_record(result: SelectiveTestResult) -> dict[str, Any]:
    """A JSON-ready dict of a result; the region as its shape and flat indices (compact)."""
    rec = result.to_dict()
    region = np.asarray(result.region, dtype=bool)
    rec["region"] = {"shape": list(region.shape), "index": np.flatnonzero(region).tolist()}
    return rec


def from_record(rec: dict[str, Any]) -> SelectiveTestResult:
    """Inverse of :func:`to_record`."""
    region = np.zeros(int(np.prod(rec["region"]["shape"])), dtype=bool)
    region[rec["region"]["index"]] = True
    fields = dict(rec)
    fields["region"] = region.reshape(rec["region"]["shape"])
    fields["intervals"] = np.asarray(rec["intervals"], dtype=np.float64).reshape(-1, 2)
    bounds = rec.get("p_value_bounds")
    fields["p_value_bounds"] = None if bounds is None else (float(bounds[0]), float(bounds[1]))
    return SelectiveTestResult(**fields)


class ResultLog:
    """The results of one batch, by key (e.g. the image's name), in a JSON-lines file.

    Parameters
    ----------
    path : path
        The file (created on the first result; its folder too).
    settings : dict
        Everything the results depend on (model, test parameters); hashed into every line, so
        that a rerun with other settings recomputes everything.
    """

    def __init__(self, path: str | os.PathLike, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        text = json.dumps(settings, sort_keys=True, default=str)
        self.settings = hashlib.sha256(text.encode()).hexdigest()[:16]
        self._done: dict[str, SelectiveTestResult | str] = {}
        self._torn = False  # the file ends inside a line: start the next record on a new one
        if self.path.is_file():
            text = self.path.read_text()
            self._torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                    if rec.get("settings") == self.settings:
                        self._done[rec["key"]] = (
                            rec["error"] if "error" in rec else from_record(rec["result"])
                        )
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line cut by an interruption, or from another version

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: str) -> SelectiveTestResult | str | None:
        """The finished result of ``key`` (an error message for a failed test), or None."""
        return self._done.get(key)

    def put(self, key: str, result: SelectiveTestResult | str) -> None:
        """Record ``key``'s result (or error message) and append it to the file at once."""
        rec: dict[str, Any] = {"settings": self.settings, "key": key}
        if isinstance(result, str):
            rec["error"] = result
        else:
            rec["result"] = to_record(result)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(("\n" if self._torn else "") + json.dumps(rec) + "\n")
            fh.flush()
        self._torn = False
        self._done[key] = result

    def get_or_run(self, key: str, compute: Any) -> SelectiveTestResult | str:
        """``key``'s finished result, or ``compute()``'s, recorded."""
        done = self.get(key)
        if done is None:
            done = compute()
            self.put(key, done)
        return done
