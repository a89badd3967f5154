"""Parametric search: the truncation set {z : M(X(z)) = M_obs}, traced piece by piece.

The search walks outwards from z_obs in both directions over network pieces (intervals of
z on which every network decision is constant; inside each the selection is solved exactly
by :mod:`diffad.selective.intervals`), never over the finer abs/threshold pieces. Each round
traces many points at once (spaced a few typical piece widths apart, skipping points
already covered), which turns the per-layer work into large GEMMs. After each round the
p-value is bracketed (:mod:`diffad.selective.bracket`): the contiguous explored range
[l, r] is known exactly and the two unexplored tails may or may not belong to the set. The
search stops when the bracket is narrower than ``precision`` (``"precision"``), when it
lies on one side of α (``"decision"``), or when [−z_max, z_max] is fully covered
(``"exhaustive"``, which reports the remaining bracket as the stated precision).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_ndtr

from diffad.selective import TERMINATIONS
from diffad.selective.bracket import log_masses, p_bounds, precision_limits
from diffad.selective.intervals import merge_intervals

#: ``evaluate(zs)`` returns, for each point, ``(lo, hi, accepted)``: the network piece
#: [lo, hi] containing it and the list of its sub-intervals where M = M_obs.
Evaluate = Callable[[np.ndarray], list]


@dataclass(eq=False)
class SearchResult:
    """Outcome of :func:`parametric_search`.

    Attributes
    ----------
    intervals : numpy.ndarray
        (k, 2) truncation set found inside the explored range (merged).
    p_value : float
        p computed on ``intervals`` (unexplored tails left out, as sicore does).
    p_bounds : tuple of float
        Smallest and largest p compatible with any membership of the unexplored tails.
    explored : tuple of float
        Contiguous explored range [l, r].
    n_evaluations : int
        Points traced (network forward passes along the line).
    n_pieces : int
        Distinct network pieces found.
    n_rounds : int
        Batched rounds.
    widths : list of float
        Widths of the finite pieces found.
    """

    intervals: np.ndarray
    p_value: float
    p_bounds: tuple[float, float]
    explored: tuple[float, float]
    n_evaluations: int
    n_pieces: int
    n_rounds: int
    widths: list = field(default_factory=list, repr=False)


def check_batch_size(batch_size: object) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is a positive integer (bool excluded)."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


class _PieceIndex:
    """The traced pieces, sorted, with the running maximum of their ends: the first stored
    piece containing x is two bisections away instead of a scan."""

    def __init__(self) -> None:
        self.pieces: list[tuple[float, float]] = []
        self._starts: list[float] = []
        self._ends_max: list[float] = []

    def add(self, new: list[tuple[float, float]]) -> None:
        self.pieces.extend(new)
        self.pieces.sort()
        self._starts = [lo for lo, _ in self.pieces]
        self._ends_max = np.maximum.accumulate([hi for _, hi in self.pieces]).tolist()

    def covering(self, x: float) -> tuple[float, float] | None:
        """A stored piece containing ``x``, or None."""
        first = bisect.bisect_left(self._ends_max, x)  # first piece whose end reaches x
        if first < bisect.bisect_right(self._starts, x):  # ... and it starts at or before x
            return self.pieces[first]
        return None

    def n_distinct(self) -> int:
        return len({(round(lo, 9), round(hi, 9)) for lo, hi in self.pieces})


class _Search:
    """State of one parametric search (see :func:`parametric_search` for the parameters)."""

    def __init__(self, z_obs, z_max, batch_size, spacing, termination, precision, alpha,
                 alternative, step) -> None:  # fmt: skip
        self.z_obs = float(z_obs)
        self.z_max = max(float(z_max), abs(z_obs) + 5.0)
        self.batch_size = batch_size
        self.spacing = spacing
        self.termination = termination
        self.precision = precision
        self.alpha = alpha
        self.alternative = alternative
        self.step = step
        self.index = _PieceIndex()
        self.accepted: list[tuple[float, float]] = []
        self.widths: dict[int, list[float]] = {1: [], -1: []}
        self.left = self.right = self.z_obs
        self.known = np.empty((0, 2))
        # log masses of the truncation set found so far, split as p needs them (A, B)
        self.log_below = self.log_above = -np.inf
        self.p, self.bounds = float("nan"), (0.0, 1.0)

    def eps(self, x: float) -> float:
        return self.step * max(1.0, abs(x))

    def advance(self, x: float, direction: int) -> float:
        """Walk from the frontier ``x`` over stored pieces as long as they touch it."""
        while True:
            cov = self.index.covering(x + direction * self.eps(x))
            if cov is None:
                return x
            x = cov[1] if direction > 0 else cov[0]
            if not np.isfinite(x):
                return x

    def candidates(self, x: float, direction: int, limit: float, count: int) -> list[float]:
        """Up to ``count`` untraced points beyond ``x``, a few typical piece widths apart
        (see ``spacing``), short of ``limit``."""
        w = self.widths[direction][-32:]
        delta = self.spacing * float(np.median(w)) if w else 0.01
        out: list[float] = []
        cur = x + direction * self.eps(x)
        while len(out) < count and direction * (limit - cur) > 0:
            cov = self.index.covering(cur)
            if cov is not None:
                nxt = cov[1] if direction > 0 else cov[0]
                if not np.isfinite(nxt):
                    break
                cur = nxt + direction * self.eps(nxt)
                continue
            out.append(cur)
            cur += direction * delta
        return out

    def next_points(self) -> list[float]:
        """The points of the next round, spent where the unexplored mass matters: a side
        whose tail moves the p bracket 10x less than the other's waits. For the two-sided p
        a tail's effect is its mass times the known mass on the other side of z_obs (see
        :func:`~diffad.selective.bracket.precision_limits`)."""
        m_right = float(log_ndtr(-self.right)) if self.right < self.z_max else -np.inf
        m_left = float(log_ndtr(self.left)) if self.left > -self.z_max else -np.inf
        known_any = max(self.log_below, self.log_above) > -np.inf
        w_right, w_left = m_right, m_left
        if self.termination != "exhaustive" and self.alternative == "two-sided" and known_any:
            w_right, w_left = m_right + self.log_below, m_left + self.log_above
        limits = [(self.z_max, -self.z_max)]
        if self.termination == "precision" and known_any:
            # No point is placed where the tail is too light to matter; the full range is
            # the fallback when the capped one has no room left.
            capped = precision_limits(
                self.log_below, self.log_above, self.precision, self.alternative
            )
            limits.insert(0, (min(self.z_max, capped[0]), max(-self.z_max, capped[1])))
        bs = self.batch_size
        for right_limit, left_limit in limits:
            pts: list[float] = []
            if m_right > -np.inf and w_right >= w_left - np.log(10.0):
                count = bs if m_left > -np.inf else 2 * bs
                pts += self.candidates(self.right, 1, right_limit, count)
            if m_left > -np.inf and w_left >= w_right - np.log(10.0):
                count = bs if m_right > -np.inf else 2 * bs
                pts += self.candidates(self.left, -1, left_limit, count)
            if pts:
                return pts
        return []

    def record(self, points: list[float], results: list) -> None:
        """Store a round's pieces and accepted intervals; update the frontier and p."""
        for z, (lo, hi, acc) in zip(points, results, strict=True):
            self.accepted.extend(acc)
            if np.isfinite(hi - lo):
                self.widths[1 if z >= self.z_obs else -1].append(hi - lo)
        self.index.add([(lo, hi) for lo, hi, _ in results])
        self.right = self.advance(self.right, 1)
        self.left = self.advance(self.left, -1)
        left, right = self.left, self.right
        self.known = merge_intervals(
            [
                (max(lo, left), min(hi, right))
                for lo, hi in self.accepted
                if hi > left and lo < right
            ],
            tol=4 * self.step,
        )
        self.log_below, self.log_above = log_masses(self.known, self.z_obs, self.alternative)
        self.p, self.bounds = p_bounds(
            self.log_below, self.log_above, self.z_obs, left, right, self.alternative
        )

    def done(self) -> bool:
        lo, hi = self.bounds
        if self.right >= self.z_max and self.left <= -self.z_max:
            return True
        if self.termination == "precision":
            return hi - lo <= self.precision
        if self.termination == "decision":
            return hi <= self.alpha or lo > self.alpha
        return False


def parametric_search(
    evaluate: Evaluate,
    z_obs: float,
    z_max: float = 10.0,
    batch_size: int = 16,
    spacing: float = 3.0,
    termination: str = "exhaustive",
    precision: float = 1e-3,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    step: float = 1e-9,
    max_evaluations: int = 1_000_000,
) -> SearchResult:
    """Find the truncation set {z : M(z) = M_obs} by tracing pieces outwards from z_obs.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(zs)`` returns, for each point, ``(lo, hi, accepted)`` with the network
        piece [lo, hi] containing it and the list of its sub-intervals where M = M_obs.
    z_obs : float
        Observed statistic (the search starts there).
    z_max : float
        Explore [−z_max, z_max] (widened to contain z_obs ± 5).
    batch_size : int
        Points traced per direction and round (1 = classic sequential search).
    spacing : float
        Distance between the points of one round, in median widths of the recent pieces.
        Piece widths vary, so at 1 about every other point lands in a piece an earlier point
        of the same round already traced; at 3 such repeats are rare, and the gaps left
        between points are filled in later rounds by points that each find a new piece.
    termination : {"exhaustive", "precision", "decision"}
        When to stop (see the module docstring).
    precision : float
        Target width of the p bracket for ``"precision"``.
    alpha : float
        Level for ``"decision"``.
    alternative : {"two-sided", "abs"}
        p-value definition (see :mod:`diffad.selective.truncnorm`).
    step : float
        Relative step past a piece end to reach the next piece; slivers narrower than this
        are skipped (their mass is below step·φ).
    max_evaluations : int
        Safety cap on traced points.

    Returns
    -------
    SearchResult
    """
    if termination not in TERMINATIONS:
        raise ValueError(f"termination must be one of {TERMINATIONS}, got {termination!r}")
    check_batch_size(batch_size)
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be > 0, got {spacing}")
    search = _Search(z_obs, z_max, batch_size, spacing, termination, precision, alpha,
                     alternative, step)  # fmt: skip
    n_eval = n_rounds = 0
    points = [float(z_obs)]
    while n_eval < max_evaluations:
        results = evaluate(np.asarray(points))
        n_eval += len(points)
        n_rounds += 1
        search.record(points, results)
        if search.done():
            break
        points = search.next_points()
        if not points:
            break
    return SearchResult(
        intervals=search.known,
        p_value=search.p,
        p_bounds=search.bounds,
        explored=(search.left, search.right),
        n_evaluations=n_eval,
        n_pieces=search.index.n_distinct(),
        n_rounds=n_rounds,
        widths=search.widths[1] + search.widths[-1],
    )
