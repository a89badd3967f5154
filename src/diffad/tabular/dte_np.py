"""DTE-NP: non-parametric diffusion time estimation from k nearest training rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffad.device import resolve_device
from diffad.tabular._base import TabularDetector

#: Distance-matrix entries per chunk when ``chunk_size`` is None (about 256 MB in float64).
_AUTO_CHUNK_ENTRIES = 32_000_000


class DTENonParametric(TabularDetector):
    """DTE-NP (Livernoche et al., ICLR 2024): inverse-Gamma posterior of the diffusion noise
    variance from the k nearest training rows.

    With m(x) the mean of the k smallest squared Euclidean distances from x to the
    (standardised) training rows, the posterior of σ² under a flat prior is
    InvGamma(α = d/2 − 1, β = m/2); its mode is m/d, the default score. ``output="distance"``
    returns m itself; both rank rows identically. (The published code evaluated the posterior
    on a 300-step grid of diffusion times and took the argmax, which saturates at the end of
    the grid for far-away rows; the continuous mode does not.)

    Distances are computed exactly in float64, in chunks of query rows, so memory stays
    bounded by ``chunk_size × n_train`` entries plus the data.

    ``decision_scores_`` (the training rows' scores) leave each row itself out of its own
    neighbour list, as PyOD's KNN does; otherwise every training score would include a zero
    distance. New rows passed to ``decision_function`` are scored against all training rows.

    Parameters
    ----------
    k : int
        Number of neighbours (published: 5). Training needs at least k + 1 rows.
    output : {"mode", "distance"}
        Score returned: posterior mode m/d, or the mean squared k-NN distance m.
    chunk_size : int or None
        Query rows per distance block; None picks one that keeps a block near 256 MB.
    contamination : float
        PyOD contamination, used only for ``threshold_``/``labels_``.
    device : str
        ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``.
    verbose : bool
        Unused (kept for a uniform interface with the neural detectors).

    Attributes
    ----------
    train_ : numpy.ndarray
        The standardised training rows.
    decision_scores_, threshold_, labels_ : PyOD training attributes.
    """

    def __init__(
        self,
        k: int = 5,
        output: str = "mode",
        chunk_size: int | None = None,
        contamination: float = 0.1,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        super().__init__(contamination=contamination)
        self.k = k
        self.output = output
        self.chunk_size = chunk_size
        self.device = device
        self.verbose = verbose

    def _min_train_rows_for(self) -> int:
        if isinstance(self.k, int | np.integer) and self.k >= 1:
            return int(self.k) + 1
        return 2

    def _check_params(self, X: np.ndarray) -> None:
        if not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if self.output not in ("mode", "distance"):
            raise ValueError(f"output must be 'mode' or 'distance', got {self.output!r}")
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int | np.integer) or self.chunk_size < 1
        ):
            raise ValueError(
                f"chunk_size must be None or a positive integer, got {self.chunk_size}"
            )

    def _fit_standardised(self, Z: np.ndarray) -> np.ndarray:
        self.train_ = np.ascontiguousarray(Z)
        return self._knn_score(Z, exclude_self=True)

    def _score_standardised(self, Z: np.ndarray) -> np.ndarray:
        return self._knn_score(Z, exclude_self=False)

    def mean_sq_distance(self, X: Any) -> np.ndarray:
        """Mean of the k smallest squared distances of new rows to the training rows.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)

        Returns
        -------
        numpy.ndarray of shape (n_rows,)
        """
        scores = self.decision_function(X)
        return scores * self.n_features_in_ if self.output == "mode" else scores

    def _knn_score(self, Z: np.ndarray, exclude_self: bool) -> np.ndarray:
        device = resolve_device(self.device)
        train = torch.as_tensor(self.train_, dtype=torch.float64, device=device)
        train_sq = (train * train).sum(dim=1)
        n_train = train.shape[0]
        chunk = self.chunk_size or max(1, _AUTO_CHUNK_ENTRIES // n_train)
        out = np.empty(Z.shape[0], dtype=np.float64)
        for start in range(0, Z.shape[0], chunk):
            q = torch.as_tensor(Z[start : start + chunk], dtype=torch.float64, device=device)
            # ||q - x||² = ||q||² + (||x||² - 2 q·x): one fused GEMM per block gives the
            # bracket; ||q||² shifts a whole row, so it is added after the top-k, and only k
            # entries per row are touched again (clamped at 0 against rounding residue).
            part = torch.addmm(train_sq[None, :], q, train.T, beta=1.0, alpha=-2.0)
            if exclude_self:
                rows = torch.arange(q.shape[0], device=device)
                part[rows, rows + start] = float("inf")
            nearest = torch.topk(part, int(self.k), dim=1, largest=False, sorted=False).values
            d2 = (nearest + (q * q).sum(dim=1, keepdim=True)).clamp_(min=0.0)
            out[start : start + q.shape[0]] = d2.mean(dim=1).cpu().numpy()
            del part
        if self.output == "mode":
            out /= self.train_.shape[1]
        return out

    def _state_tensors(self) -> dict[str, torch.Tensor | np.ndarray]:
        return {"train": self.train_}

    def _load_state(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.train_ = tensors["train"].numpy().astype(np.float64)
