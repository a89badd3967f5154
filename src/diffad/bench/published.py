"""Published ROC-AUC (%) of the DTE paper, read from JSON.

Source: the results tables of "On Diffusion Modeling for Anomaly Detection" (Livernoche,
Jain, Hezaveh, Ravanbakhsh, ICLR 2024), as released in the authors' public README: mean and
standard deviation over 5 seeds, per ADBench data set (multi-file families such as
MVTec-AD, CIFAR10 or 20news are averaged over their files). ``semi`` is the one-class
protocol (diffad's ``semi-paper``), ``unsup`` the contaminated one. Only the 8 methods
that ``diffad bench tabular`` runs are kept (``data/dte_published_rocauc.json``); pass
``--anchors FILE`` to compare against another JSON file of the same layout
``{protocol: {"methods": [...], "data": {set: [[mean, std], ...]}}}``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

#: {protocol: {data set: {METHOD: (mean, std)}}}
Published = dict[str, dict[str, dict[str, tuple[float, float]]]]


def load_published(path: str | Path | None = None) -> Published:
    """Read a published-results JSON; ``None`` reads the DTE paper's numbers.

    Returns
    -------
    dict
        ``{protocol: {data set: {METHOD: (mean, std)}}}``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not in the layout above.
    """
    if path is None:
        text = resources.files("diffad.bench").joinpath("data/dte_published_rocauc.json")
        raw, name = json.loads(text.read_text()), "dte_published_rocauc.json"
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"published-results file not found: {path}")
        raw, name = json.loads(path.read_text()), str(path)
    out: Published = {}
    try:
        for protocol, block in raw.items():
            names = block["methods"]
            out[protocol] = {
                ds: {m: tuple(v) for m, v in zip(names, vals, strict=True)}
                for ds, vals in block["data"].items()
            }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{name}: not in the layout {{protocol: {{methods, data}}}}") from err
    return out


PUBLISHED_ROCAUC: Published = load_published()
