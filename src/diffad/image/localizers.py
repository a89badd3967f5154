"""The image localisers by name, and loading a saved one whatever its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffad.checkpoint import checkpoint_kind

#: Localiser methods (``diffad.image.LOCALIZER_METHODS``): name → (module, class).
METHODS: dict[str, tuple[str, str]] = {
    "ddpm": ("diffad.image.ddpm_localizer", "DDPMLocalizer"),
    "disyre": ("diffad.image.disyre_localizer", "DisyreLocalizer"),
}


def localizer_class(method: str) -> type:
    """The class of localiser ``method`` (``"ddpm"`` or ``"disyre"``)."""
    import importlib

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    module, name = METHODS[method]
    return getattr(importlib.import_module(module), name)


def load_localizer(path: str | Path, device: str | None = None) -> Any:
    """A saved localiser of any kind, from the class name stored in its checkpoint.

    Raises
    ------
    ValueError
        Not a checkpoint, or a checkpoint of a class that is not an image localiser.
    """
    kind = checkpoint_kind(path)
    for method in METHODS:
        cls = localizer_class(method)
        if cls.__name__ == kind:
            return cls.load(path, device=device)
    raise ValueError(f"checkpoint {path} holds a {kind}, not an image localiser")
