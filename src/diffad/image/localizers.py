"""The image localisers by name, and loading a saved one whatever its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffad.checkpoint import checkpoint_kind
from diffad.image import LOCALIZER_CLASSES as METHODS


def localizer_class(method: str) -> type:
    """The class of localiser ``method`` (``"ddpm"`` or ``"disyre"``)."""
    import importlib

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    module, name = METHODS[method]
    return getattr(importlib.import_module(module), name)


def load_localizer(
    path: str | Path,
    device: str | None = None,
    verbose: bool | None = None,
    resize: bool = False,
) -> Any:
    """A saved localiser of any kind, from the class name stored in its checkpoint.

    Parameters
    ----------
    path : str or Path
        Checkpoint folder.
    device : str, optional
        Override the stored device.
    verbose : bool, optional
        Override the stored progress-bar setting.
    resize : bool
        Resize inputs of another size to the model's (needs stored preprocessing).

    Raises
    ------
    ValueError
        Not a checkpoint, a checkpoint of a class that is not an image localiser, or
        ``resize`` for a model without stored preprocessing.
    """
    kind = checkpoint_kind(path)
    for method in METHODS:
        cls = localizer_class(method)
        if cls.__name__ == kind:
            loc = cls.load(path, device=device)
            break
    else:
        raise ValueError(f"checkpoint {path} holds a {kind}, not an image localiser")
    if verbose is not None:
        loc.set_params(verbose=verbose)
    if resize:
        if loc.preprocessing_ is None:
            raise ValueError("this model has no stored preprocessing, so it cannot resize")
        loc.preprocessing_.resize = True
    return loc
