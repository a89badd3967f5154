"""Deprecation helpers: old keyword, attribute and module names that still work, with a warning."""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any


def renamed_keywords(owner: str, passed: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """Values passed under old keyword names, keyed by their new names.

    Parameters
    ----------
    owner : str
        Name of the class or function, for the messages.
    passed : dict
        The ``**kwargs`` a constructor received.
    renames : dict
        Old name → new name.

    Returns
    -------
    dict
        New name → value, one ``DeprecationWarning`` per old name used.

    Raises
    ------
    TypeError
        For a keyword that is neither a parameter nor an old name of one.
    """
    out = {}
    for old, value in passed.items():
        if old not in renames:
            raise TypeError(f"{owner}() got an unexpected keyword argument {old!r}")
        new = renames[old]
        warnings.warn(
            f"{owner}: parameter {old!r} was renamed {new!r}; the old name will be removed",
            DeprecationWarning,
            stacklevel=3,
        )
        out[new] = value
    return out


def renamed_attribute(owner: Any, old: str, new: str) -> Any:
    """``getattr(owner, new)`` with a ``DeprecationWarning`` naming ``old``."""
    warnings.warn(
        f"{type(owner).__name__}.{old} was renamed {new}; the old name will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(owner, new)


def moved_module(old: str, new: str) -> None:
    """Make module ``old`` an alias of ``new`` (call it from the old module's body).

    The import system returns ``sys.modules[old]`` after running the old module, so
    replacing that entry hands every importer the new module itself.
    """
    warnings.warn(
        f"{old} moved to {new}; the old path will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
