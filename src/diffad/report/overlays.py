"""One overlay picture per image of a run folder (``diffad localize --overlays``)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from diffad.report.render import common_vmax, image_figure
from diffad.report.run_folder import load_run

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PICTURE = re.compile(r"\.(png|jpe?g|bmp|tiff?|npy|nii(\.gz)?)$", re.IGNORECASE)


def overlay_name(name: str, taken: set[str]) -> str:
    """A file name for the image called ``name``: its stem made safe, ``.png``, unique."""
    stem = _UNSAFE.sub("_", _PICTURE.sub("", name)).strip("_") or "image"
    candidate, k = f"{stem}.png", 1
    while candidate in taken:
        k += 1
        candidate = f"{stem}-{k}.png"
    taken.add(candidate)
    return candidate


def write_overlays(folder: str | os.PathLike) -> list[Path]:
    """Write ``folder/overlays/<name>.png`` for every image: input, reconstruction, map on
    the run's common colour scale with its colour bar, and the mask / region outlines.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``report.json``'s images.
    """
    report, arrays = load_run(folder)
    out = Path(folder) / "overlays"
    out.mkdir(exist_ok=True)
    vmax = common_vmax(arrays["maps"])
    taken: set[str] = set()
    written = []
    for entry in report["images"]:
        i = int(entry["id"])
        title = f"{entry['name']}: image score {entry['image_score']:.4g}"
        uri = image_figure(arrays, i, vmax, title)
        path = out / overlay_name(entry["name"], taken)
        path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        written.append(path)
    return written
