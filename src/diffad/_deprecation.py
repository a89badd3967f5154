"""Deprecation helpers: old keyword, attribute and module names that still work, with a warning."""

from __future__ import annotations

import functools
import importlib
import sys
import warnings
from typing import Any


def renamed_parameters(renames: dict[str, str]):
    """Class decorator: the constructor also accepts old parameter names (old → new), with
    a ``DeprecationWarning``.

    The wrapper keeps the original signature visible (``__wrapped__`` for :mod:`inspect`,
    ``deprecated_original`` for scikit-learn's and PyOD's ``get_params``), so estimator
    introspection, ``clone`` and the estimator checks see only the current names.
    """

    def decorate(cls):
        original = cls.__init__

        @functools.wraps(original)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            for old in [k for k in kwargs if k in renames]:
                new = renames[old]
                if new in kwargs:
                    raise TypeError(f"{cls.__name__}() got both {old!r} and its new name {new!r}")
                warnings.warn(
                    f"{cls.__name__}: parameter {old!r} was renamed {new!r}; the old name will "
                    "be removed",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            original(self, *args, **kwargs)

        __init__.deprecated_original = original
        cls.__init__ = __init__
        cls._renamed_parameters = dict(renames)
        return cls

    return decorate


def renamed_keyword(owner: str, old: str, new: str, value: Any) -> Any:
    """``value`` passed under the old keyword ``old`` of ``owner``, with a warning."""
    warnings.warn(
        f"{owner}: parameter {old!r} was renamed {new!r}; the old name will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    return value


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
