"""The detectors ``diffad bench tabular`` can run, by command-line name.

diffad's own detectors are imported only when asked for, so the PyOD baselines work even
where the diffusion detectors cannot be imported.
"""

from __future__ import annotations

import inspect
from typing import Any

METHODS: dict[str, str] = {
    "dte-np": "DTE-NP",
    "dte-ig": "DTE-IG",
    "dte-c": "DTE-C",
    "dte-c-ds": "DTE-C",
    "ddpm": "DDPM",
    "knn": "KNN",
    "iforest": "IForest",
    "lof": "LOF",
    "ocsvm": "OCSVM",
}
"""Command-line name -> the method's name in the published DTE results."""

LABELS: dict[str, str] = {**METHODS, "dte-c-ds": "DTE-C (double softmax)"}
"""Command-line name -> table label; ``dte-c-ds`` is DTE-C with the published code's loss
(``double_softmax=True``), compared with the published DTE-C numbers."""

_DIFFAD_CLASSES = {
    "dte-np": "DTENonParametric",
    "dte-ig": "DTEInverseGamma",
    "dte-c": "DTECategorical",
    "dte-c-ds": "DTECategorical",
    "ddpm": "DDPMDetector",
}

#: Constructor arguments a method name implies.
_FIXED_PARAMS: dict[str, dict[str, Any]] = {"dte-c-ds": {"double_softmax": True}}

#: The methods that train a network (they take ``epochs``): all of diffad's but DTE-NP.
NEURAL_METHODS = tuple(m for m in _DIFFAD_CLASSES if m != "dte-np")


def parse_methods(spec: str) -> list[str]:
    """Split a comma-separated method list and check every name.

    Raises
    ------
    ValueError
        On an empty list or an unknown name.
    """
    names = [m.strip().lower() for m in spec.split(",") if m.strip()]
    if not names:
        raise ValueError("no method given")
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def make_detector(name: str, seed: int, device: str = "auto", verbose: bool = False, **params: Any):
    """A fresh, unfitted detector.

    Parameters
    ----------
    name : str
        One of ``METHODS``.
    seed : int
        ``random_state`` of randomised detectors.
    device : str
        Device of diffad's torch detectors ("auto" = CUDA when present).
    verbose : bool
        Progress bars of diffad's detectors.
    **params
        Extra constructor arguments for diffad's detectors (e.g. ``epochs``).

    PyOD baselines use PyOD's defaults, as the published results do (KNN: k = 5, "largest").
    """
    if name in _DIFFAD_CLASSES:
        import diffad.tabular as tabular

        cls = getattr(tabular, _DIFFAD_CLASSES[name], None)
        if cls is None:
            raise ValueError(f"method {name!r} is not available in this diffad build")
        kwargs: dict[str, Any] = {"random_state": seed, "device": device, "verbose": verbose}
        # Deterministic detectors (DTE-NP) take no random_state: pass what the class accepts.
        accepted = inspect.signature(cls).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(f"{name} does not take parameter(s) {unknown}")
        return cls(**kwargs, **{**params, **_FIXED_PARAMS.get(name, {})})
    if name == "knn":
        from pyod.models.knn import KNN

        return KNN()
    if name == "iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if name == "lof":
        from pyod.models.lof import LOF

        return LOF()
    if name == "ocsvm":
        from pyod.models.ocsvm import OCSVM

        return OCSVM()
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
