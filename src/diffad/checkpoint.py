"""Checkpoints as a folder holding ``config.json`` and ``weights.safetensors``.

Nothing is ever unpickled: weights are safetensors, everything else is JSON. The config
names the class that wrote it, so loading a checkpoint into another class fails clearly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from diffad import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"


def save_checkpoint(
    path: str | Path,
    kind: str,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor | np.ndarray],
) -> Path:
    """Write a checkpoint folder.

    Parameters
    ----------
    path : str or Path
        Folder to create (parents too); existing files of the same names are overwritten.
    kind : str
        Name of the class that owns the checkpoint, checked again by :func:`load_checkpoint`.
    config : dict
        JSON-serialisable constructor parameters and fitted scalars.
    tensors : dict
        Named arrays (numpy or torch); stored contiguous on the CPU.

    Returns
    -------
    Path
        The folder written.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"class": kind, "diffad_version": __version__, "config": config}
    (folder / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
    flat = {
        name: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
        .detach()
        .cpu()
        .contiguous()
        for name, v in tensors.items()
    }
    save_file(flat, str(folder / WEIGHTS_NAME))
    return folder


def load_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint folder written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or Path
        The checkpoint folder.
    kind : str
        The class expected to have written it.

    Returns
    -------
    config : dict
        The stored configuration.
    tensors : dict of torch.Tensor
        The stored arrays, on the CPU.

    Raises
    ------
    ValueError
        If the folder or its files are missing or unreadable, or the checkpoint belongs to
        another class.
    """
    folder = Path(path)
    payload = _read_payload(folder)
    stored = payload.get("class")
    if stored != kind:
        raise ValueError(f"checkpoint {folder} was written by {stored!r}, not {kind!r}")
    weights_file = folder / WEIGHTS_NAME
    try:
        tensors = load_file(str(weights_file))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"cannot read weights {weights_file}: {err}") from err
    return payload["config"], tensors


def _read_payload(folder: Path) -> dict[str, Any]:
    """The JSON of a checkpoint folder, after checking that both files are there."""
    config_file = folder / CONFIG_NAME
    if not config_file.is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise ValueError(
            f"{folder} is not a diffad checkpoint: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it"
        )
    try:
        payload = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {config_file}: {err}") from err
    if not isinstance(payload, dict):
        raise ValueError(f"{config_file} is not a diffad checkpoint configuration")
    return payload


def checkpoint_kind(path: str | Path) -> str:
    """The class that wrote the checkpoint folder ``path`` (read from its JSON only).

    Raises
    ------
    ValueError
        If the folder is not a readable diffad checkpoint.
    """
    stored = _read_payload(Path(path)).get("class")
    if not isinstance(stored, str):
        raise ValueError(f"{Path(path) / CONFIG_NAME} does not name the class that wrote it")
    return stored
