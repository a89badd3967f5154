"""The outcome of one selective test."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NO_REGION = "no region selected"

#: Errors of one image's test that become that image's outcome in a batch; any other
#: exception is a bug (or an interruption) and stops the batch.
IMAGE_ERRORS = (ValueError, RuntimeError)


def reject_at(
    bounds: tuple[float, float] | list[float] | None,
    alpha: float,
    p_value: float | None = None,
) -> bool | None:
    """The test's decision at level ``alpha`` from the p-value's bracket [lo, hi] (or, with no
    bracket, the exact ``p_value``): True when hi < alpha, False when lo >= alpha, None
    (undecided) when the bracket straddles alpha or there is no p-value."""
    if not bounds:
        if p_value is None:
            return None
        bounds = (p_value, p_value)
    lo, hi = bounds
    if hi < alpha:
        return True
    if lo >= alpha:
        return False
    return None


@dataclass(eq=False)
class SelectiveTestResult:
    """Result of :meth:`SelectiveTest.test`.

    Attributes
    ----------
    method : str
        The p-value method.
    p_value : float or None
        The p-value; ``None`` when no region was selected.
    naive_p_value : float or None
        2Φ(−|z|), for reference (invalid as a test).
    statistic : float or None
        T = mean_M(X) − mean_M(X′).
    z : float or None
        T / sd(T).
    region : numpy.ndarray
        Boolean mask M in the layout of the input image.
    region_size : int
        |M|.
    intervals : numpy.ndarray
        (k, 2) truncation set of z (``oc``: one interval; ``parametric``: the union found);
        empty for the other methods.
    n_pieces : int
        Network pieces traced along the line.
    n_network_calls : int
        U-Net calls evaluated while tracing (the prefix cache lets a point skip the leading
        calls it shares with an earlier one; without it: ``n_pieces`` × DDIM calls).
    seconds : float
        Wall-clock time of this test.
    p_value_bounds : tuple of float or None
        ``parametric``: range of p over any membership of the unexplored tails — the
        precision to which ``p_value`` is exact.
    message : str
        ``"no region selected"`` when M is empty, else ``""``.
    null : str
        What ``p_value`` was computed against: ``"selective"`` (the truncated normal of the
        exact test), ``"gaussian"``, ``"scaled"`` or ``"conformal"``
        (:mod:`diffad.selective.fission`), or the comparator's own reference distribution.
    """

    method: str
    p_value: float | None
    naive_p_value: float | None
    statistic: float | None
    z: float | None
    region: np.ndarray
    region_size: int
    intervals: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    n_pieces: int = 0
    n_network_calls: int = 0
    seconds: float = 0.0
    p_value_bounds: tuple[float, float] | None = None
    message: str = ""
    null: str = ""

    @property
    def selected(self) -> bool:
        """Whether a region was selected (and tested)."""
        return self.region_size > 0

    def decision(self, alpha: float) -> str:
        """``"reject"``, ``"no evidence"``, ``"undecided"`` (the p bracket straddles alpha)
        or ``"no region"``, at level ``alpha``."""
        if not self.selected:
            return "no region"
        verdict = reject_at(self.p_value_bounds, alpha, self.p_value)
        return {True: "reject", False: "no evidence", None: "undecided"}[verdict]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the region as a nested list of 0/1)."""
        out = asdict(self)
        out["region"] = self.region.astype(int).tolist()
        out["intervals"] = np.asarray(self.intervals).tolist()
        out["p_value_bounds"] = None if self.p_value_bounds is None else list(self.p_value_bounds)
        return out


#: One image's outcome in a batch: its result, or the error of its test.
Outcome = SelectiveTestResult | Exception
