"""Reuse of the leading network calls shared by nearby points of one line."""

from __future__ import annotations

import numpy as np
import torch


class PrefixCache:
    """States after each DDIM call of recently traced points of one line, for reuse.

    The interval on which the first j network calls keep their decisions can be wider than
    the final piece. A new point inside the cumulative interval of the first j calls of a
    cached point starts at call j + 1 from that point's state moved along its (exact) slope,
    skipping j network evaluations. A ring buffer of ``capacity`` points; use one cache per
    line (a, b). ``calls_run`` counts the network calls evaluated (points × calls without
    the cache).
    """

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = int(capacity)
        self.calls_run = 0
        self.size = 0
        self.next = 0
        self.z = np.zeros(self.capacity)
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None
        self.value: torch.Tensor | None = None
        self.slope: torch.Tensor | None = None

    def lookup(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each z: the number of leading calls it can skip and the cached point to use."""
        if self.size == 0 or self.lo is None:
            return np.zeros(len(z), dtype=np.int64), np.zeros(len(z), dtype=np.int64)
        lo, hi = self.lo[: self.size], self.hi[: self.size]
        inside = (lo[None] <= z[:, None, None]) & (z[:, None, None] <= hi[None])
        depth = np.cumprod(inside, axis=2).sum(axis=2)  # (n, R): leading calls contained
        best = depth.argmax(axis=1)
        return depth[np.arange(len(z)), best], best

    def add(
        self,
        z: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        value: torch.Tensor,
        slope: torch.Tensor,
    ) -> None:
        """Store points: z (n,), cumulative interval ends lo/hi (n, K) after each of the
        first K calls, and the states after those calls (n, K, C, H, W)."""
        if self.lo is None:
            k = lo.shape[1]
            self.lo = np.zeros((self.capacity, k))
            self.hi = np.zeros((self.capacity, k))
            shape = (self.capacity, *value.shape[1:])
            self.value = torch.zeros(shape, dtype=value.dtype, device=value.device)
            self.slope = torch.zeros(shape, dtype=value.dtype, device=value.device)
        for i in range(len(z)):
            j = self.next
            self.z[j], self.lo[j], self.hi[j] = z[i], lo[i], hi[i]
            self.value[j], self.slope[j] = value[i], slope[i]
            self.next = (j + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
