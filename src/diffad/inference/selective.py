"""DAL-Test: selective p-value for the region a diffusion reconstruction flags.

Model: X = μ + ε and a reference X′ = μ′ + ε′, independent, ε, ε′ ~ N(0, Σ) with Σ known.
Selection (DAL-Test defaults): D(X) is the seeded DDIM reconstruction of the localizer
(T′ = 460, DDIM steps [460, 345, 230, 115, 0], η = 1 as published), E = |K ∗ (D(X) − X)|
with K a 3×3 mean filter (zero padding) and M = {i : E_i > λ}, λ = 0.8. Test
H0: mean_M(μ) = mean_M(μ′) with T = mean_M(X) − mean_M(X′). Conditioning on M and on the
nuisance component, z = T / sd(T) is N(0, 1) truncated to {z : M(X(z)) = M_obs} along the
line X(z) = X − (z_obs − z)·Σ1_M / (|M|·sd(T)); see :mod:`diffad.inference.search` and
:mod:`diffad.inference.truncnorm` (two-sided p = 2·min(F, 1 − F)).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from diffad.device import resolve_device
from diffad.image.reconstruct import ddim_timesteps, draw_reconstruction_noise
from diffad.inference.comparators import bonferroni_p_value, permutation_p_value
from diffad.inference.search import (
    TERMINATIONS,
    check_batch_size,
    oc_interval,
    parametric_search,
    selection_intervals,
)
from diffad.inference.trace import PrefixCache, ReconstructionTracer
from diffad.inference.truncnorm import naive_p_value, truncated_p_value

METHODS = ("parametric", "oc", "naive", "bonferroni", "permutation")
NO_REGION = "no region selected"


@dataclass
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

    @property
    def selected(self) -> bool:
        """Whether a region was selected (and tested)."""
        return self.region_size > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the region as a nested list of 0/1)."""
        out = asdict(self)
        out["region"] = self.region.astype(int).tolist()
        out["intervals"] = np.asarray(self.intervals).tolist()
        out["p_value_bounds"] = None if self.p_value_bounds is None else list(self.p_value_bounds)
        return out


class _Covariance:
    """Σ as scalar, per-pixel variances or a full matrix; only Σ·v is needed."""

    def __init__(self, sigma: Any, n: int, shape: tuple[int, ...]) -> None:
        arr = np.asarray(sigma, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("sigma contains NaN or inf")
        if arr.ndim == 0 or arr.size == 1 and arr.ndim <= 1:
            if not arr.reshape(()) > 0:
                raise ValueError(f"a scalar sigma (variance) must be > 0, got {float(arr)}")
            self.kind, self.value = "scalar", float(arr.reshape(()))
        elif arr.shape == (n,) or (arr.size == n and arr.shape == shape[len(shape) - arr.ndim :]):
            if np.any(arr <= 0):
                raise ValueError("per-pixel variances must all be > 0")
            self.kind, self.value = "diagonal", arr.reshape(-1)
        elif arr.shape == (n, n):
            if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12):
                raise ValueError("the covariance matrix sigma must be symmetric")
            try:
                np.linalg.cholesky(arr)
            except np.linalg.LinAlgError as err:
                raise ValueError("the covariance matrix sigma is not positive definite") from err
            self.kind, self.value = "full", arr
        else:
            raise ValueError(
                f"sigma must be a scalar variance, per-pixel variances of shape {shape} or "
                f"({n},), or an ({n}, {n}) covariance matrix; got shape {arr.shape}"
            )

    def times(self, v: np.ndarray) -> np.ndarray:
        """Σ·v."""
        if self.kind == "scalar":
            return self.value * v
        if self.kind == "diagonal":
            return self.value * v
        return self.value @ v


class _Line(NamedTuple):
    """One test's inputs: the pair, Σ, the tracer, the selection and the line a + b·z."""

    x: np.ndarray
    ref: np.ndarray
    cov: _Covariance
    tracer: ReconstructionTracer
    m_obs: np.ndarray
    region: np.ndarray
    a: np.ndarray
    b: np.ndarray
    stat: float
    z: float


class SelectiveTest:
    """Exact selective p-value (DAL-Test) for the region a diffusion localizer flags.

    Parameters
    ----------
    localizer : DDPMLocalizer
        A fitted localizer (``model_``, ``schedule_``; ``t_start``, ``n_steps``, ``eta``).
    sigma : float, array or matrix
        Noise covariance Σ of X and X′: a scalar *variance* (Σ = sigma·I), per-pixel
        variances (image-shaped or flat), or a full (n, n) matrix over the C·H·W pixels.
    lam : float
        Threshold λ on the filtered reconstruction error.
    filter_size : int
        Side of the mean filter K (odd).
    t_start, n_steps : int, optional
        Reconstruction noise level and DDIM calls; default: the localizer's (the published
        DAL-Test setting is 460 and 5).
    seed : int
        Seed of the reconstruction noise (the selection is D with these fixed constants).
    termination : {"precision", "exhaustive", "decision"}
        Parametric search stopping rule (see :mod:`diffad.inference.search`). The default
        ``"precision"`` stops once the p-value is bracketed to ``precision`` (sicore's default
        rule; the bracket is ``p_value_bounds``); ``"exhaustive"`` covers the whole range.
    precision : float
        p bracket width for ``termination="precision"`` (default 1e-3).
    alpha : float
        Level for ``termination="decision"``.
    z_max : float
        Parametric search range [−z_max, z_max] (widened to z_obs ± 5).
    batch_size : int, optional
        Points traced per direction and round of the parametric search; default
        (``None``): :meth:`search_batch_size`, 32 for images of up to 256 pixels, else 16.
    spacing : float
        Distance between the points of one round, in median piece widths (see
        :func:`~diffad.inference.search.parametric_search`).
    reuse_prefix : bool
        Start a new point after the leading DDIM calls whose decisions it shares with an
        earlier traced point (exact; :class:`~diffad.inference.trace.PrefixCache`).
        ``False`` traces every call, for timing comparisons.
    alternative : {"two-sided", "abs"}
        Two-sided p-value definition (see :mod:`diffad.inference.truncnorm`).
    n_permutations : int
        B for ``method="permutation"``.
    random_state : int
        Seed of the permutations.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(
        self,
        localizer: Any,
        sigma: Any,
        lam: float = 0.8,
        filter_size: int = 3,
        t_start: int | None = None,
        n_steps: int | None = None,
        seed: int = 0,
        termination: str = "precision",
        precision: float = 1e-3,
        alpha: float = 0.05,
        z_max: float = 10.0,
        batch_size: int | None = None,
        spacing: float = 3.0,
        reuse_prefix: bool = True,
        alternative: str = "two-sided",
        n_permutations: int = 1000,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.localizer = localizer
        self.sigma = sigma
        self.lam = lam
        self.filter_size = filter_size
        self.t_start = t_start
        self.n_steps = n_steps
        self.seed = seed
        self.termination = termination
        self.precision = precision
        self.alpha = alpha
        self.z_max = z_max
        self.batch_size = batch_size
        self.spacing = spacing
        self.reuse_prefix = reuse_prefix
        self.alternative = alternative
        self.n_permutations = n_permutations
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ set-up
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_tracer_cache", None)  # rebuilt in each joblib worker
        return state

    def search_batch_size(self, n_pixels: int) -> int:
        """Points per direction and round of the parametric search for an image of C·H·W pixels.

        ``batch_size`` when set. Otherwise 32 up to 256 pixels and 16 above: larger rounds
        make larger GEMMs but may trace a few points the stopping rule would not have needed.
        Against 16, 32 took 11 % less CPU at 8×8 on an idle machine (1.84 → 1.37 s wall per
        p-value with two threads) and about the same at 16×16 and 32×32; larger images are
        untested with 32 and keep 16 (``benchmarks/si_spacing.py --batch-sizes``,
        ``benchmarks/si_vs_si4onnx.py``; results in ``benchmarks/results``).
        """
        if self.batch_size is not None:
            return self.batch_size
        return 32 if n_pixels <= 256 else 16

    def _check_params(self) -> None:
        if not hasattr(self.localizer, "model_"):
            raise ValueError("the localizer is not fitted: call fit() or load() first")
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        if not (np.isfinite(self.lam) and self.lam > 0):
            raise ValueError(f"lam must be > 0, got {self.lam}")
        if self.termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {TERMINATIONS}, got {self.termination!r}")
        if self.alternative not in ("two-sided", "abs"):
            raise ValueError(f"alternative must be 'two-sided' or 'abs', got {self.alternative!r}")

    def _tracer(self, shape: tuple[int, int, int]) -> ReconstructionTracer:
        loc = self.localizer
        t_start = int(loc.t_start if self.t_start is None else self.t_start)
        n_steps = int(loc.n_steps if self.n_steps is None else self.n_steps)
        key = (shape, t_start, n_steps, int(self.seed), int(self.filter_size))
        cache = self.__dict__.setdefault("_tracer_cache", {})
        if key not in cache:
            steps = ddim_timesteps(t_start, n_steps)
            noises = draw_reconstruction_noise((1, *shape), steps, int(self.seed), "cpu")
            model = loc.model_.eval()
            cache.clear()
            cache[key] = ReconstructionTracer(
                model,
                loc.schedule_,
                steps,
                noises,
                eta=float(getattr(loc, "eta", 1.0)),
                filter_size=int(self.filter_size),
                device=resolve_device(self.device),
            )
        return cache[key]

    def _check_pair(self, image: Any, reference: Any) -> tuple[np.ndarray, np.ndarray, tuple]:
        x = np.asarray(image, dtype=np.float64)
        r = np.asarray(reference, dtype=np.float64)
        if x.ndim not in (2, 3):
            raise ValueError(f"image must be (H, W) or (C, H, W), got shape {x.shape}")
        if r.shape != x.shape:
            raise ValueError(f"reference shape {r.shape} differs from image shape {x.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(r))):
            raise ValueError("image and reference must not contain NaN or inf")
        shape3 = x.shape if x.ndim == 3 else (1, *x.shape)
        model = self.localizer.model_
        model.check_input(torch.empty((1, *shape3)))
        return x.reshape(shape3), r.reshape(shape3), x.shape

    # ------------------------------------------------------------------ testing
    def _line(self, image: Any, reference: Any) -> _Line | None:
        """Everything the test conditions on, or None when no region is selected."""
        self._check_params()
        x, ref, shape = self._check_pair(image, reference)
        tracer = self._tracer(x.shape)
        cov = _Covariance(self.sigma, x.size, x.shape)
        m_obs = np.abs(tracer.filtered_difference(x[None])[0]) > float(self.lam)
        size = int(m_obs.sum())
        if size == 0:
            return None
        xf, rf = x.reshape(-1), ref.reshape(-1)
        ones = m_obs.astype(np.float64)
        s1 = cov.times(ones)
        sd = float(np.sqrt(2.0 * ones @ s1)) / size
        stat = float(xf[m_obs].mean() - rf[m_obs].mean())
        z = stat / sd
        # X(z) = a + b·z moves the image along the test direction with everything else
        # (the component independent of the statistic) held at its observed value.
        b = s1 / (size * sd)
        a = xf - z * b
        return _Line(x, ref, cov, tracer, m_obs, m_obs.reshape(shape), a, b, stat, z)

    def conditioning_line(
        self, image: Any, reference: Any
    ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """The line X(z) = a + b·z in image space that the selective test searches along.

        Parameters
        ----------
        image, reference : array-like
            As for :meth:`test`.

        Returns
        -------
        a, b : numpy.ndarray
            Flattened (C·H·W,) intercept and direction; X(z_obs) is the image.
        z_obs : float
            The observed statistic.
        region : numpy.ndarray
            The selected region (bool, image shape).

        Raises
        ------
        ValueError
            When the selected region is empty (there is nothing to test).
        """
        line = self._line(image, reference)
        if line is None:
            raise ValueError(NO_REGION)
        return line.a, line.b, line.z, line.region

    def test(self, image: Any, reference: Any, method: str = "parametric") -> SelectiveTestResult:
        """p-value for the region selected in ``image`` against ``reference``.

        Parameters
        ----------
        image, reference : array-like
            (H, W) or (C, H, W), same shape, sides divisible by the U-Net's down-sampling.
        method : {"parametric", "oc", "naive", "bonferroni", "permutation"}
            ``parametric`` is the exact DAL-Test p-value; ``oc`` over-conditions on every
            decision (valid, less power); the others are comparators.

        Returns
        -------
        SelectiveTestResult
        """
        start = time.perf_counter()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        line = self._line(image, reference)
        if line is None:
            region = np.zeros(np.shape(image), dtype=bool)
            return SelectiveTestResult(
                method, None, None, None, None, region, 0,
                seconds=time.perf_counter() - start, message=NO_REGION,
            )  # fmt: skip
        z = line.z
        naive = naive_p_value(z)
        result = SelectiveTestResult(
            method, None, naive, line.stat, z, line.region, int(line.m_obs.sum())
        )
        if method == "naive":
            result.p_value = naive
        elif method == "bonferroni":
            result.p_value = bonferroni_p_value(z, line.x.size)
        elif method == "permutation":
            result.p_value = self._permutation(line.x, line.ref, line.cov, z, line.tracer)
        else:
            self._selective(result, line.tracer, line.a, line.b, z, line.m_obs, method)
        result.seconds = time.perf_counter() - start
        return result

    def _selective(self, result, tracer, a, b, z, m_obs, method) -> None:
        lam = float(self.lam)
        if method == "oc":
            tr = tracer.evaluate(a, b, [z])
            lo, hi = oc_interval(z, tr.lo[0], tr.hi[0], tr.filt_value[0], tr.filt_slope[0], lam)
            result.intervals = np.array([[lo, hi]])
            result.p_value = truncated_p_value(z, result.intervals, self.alternative)
            result.n_pieces = 1
            result.n_network_calls = len(tracer.steps)
            return

        cache = PrefixCache() if self.reuse_prefix else None

        def evaluate(zs: np.ndarray) -> list:
            tr = tracer.evaluate(a, b, zs, cache=cache)
            return [
                (
                    float(tr.lo[k]),
                    float(tr.hi[k]),
                    selection_intervals(
                        zs[k], tr.lo[k], tr.hi[k], tr.filt_value[k], tr.filt_slope[k], lam, m_obs
                    ),
                )
                for k in range(len(zs))
            ]

        found = parametric_search(
            evaluate,
            z,
            z_max=float(self.z_max),
            batch_size=self.search_batch_size(np.size(a)),
            spacing=float(self.spacing),
            termination=self.termination,
            precision=float(self.precision),
            alpha=float(self.alpha),
            alternative=self.alternative,
        )
        if not np.isfinite(found.p_value):
            raise RuntimeError("the observed statistic is not in its own truncation set")
        result.p_value = found.p_value
        result.p_value_bounds = found.p_bounds
        result.intervals = found.intervals
        result.n_pieces = found.n_evaluations
        result.n_network_calls = (
            cache.calls_run if cache is not None else found.n_evaluations * len(tracer.steps)
        )

    def _permutation(self, x, ref, cov, z, tracer) -> float:
        lam = float(self.lam)

        def z_of_pair(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            masks = np.abs(tracer.filtered_difference(xs)) > lam
            xs, ys = xs.reshape(len(xs), -1), ys.reshape(len(ys), -1)
            out = np.zeros(len(xs))
            for i, m in enumerate(masks):
                k = int(m.sum())
                if k:
                    ones = m.astype(np.float64)
                    sd = float(np.sqrt(2.0 * ones @ cov.times(ones))) / k
                    out[i] = (xs[i, m].mean() - ys[i, m].mean()) / sd
            return out

        return permutation_p_value(
            x, ref, z_of_pair, z, int(self.n_permutations), int(self.random_state)
        )

    def test_many(
        self,
        images: Any,
        references: Any,
        method: str = "parametric",
        n_jobs: int | None = 1,
        verbose: bool = False,
    ) -> list[SelectiveTestResult]:
        """:meth:`test` over a batch, optionally in parallel with joblib.

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W).
        references : array-like
            One reference per image (same shape as ``images``) or a single reference.
        method : str
            As in :meth:`test`.
        n_jobs : int or None
            joblib workers (-1 = all cores).
        verbose : bool
            Show a progress bar over the images (one p-value can take seconds to minutes).

        Returns
        -------
        list of SelectiveTestResult
            One per image, in input order.
        """
        imgs = np.asarray(images, dtype=np.float64)
        refs = np.asarray(references, dtype=np.float64)
        if imgs.ndim not in (3, 4) or len(imgs) == 0:
            raise ValueError(
                f"images must be a non-empty (N, H, W) or (N, C, H, W), got {imgs.shape}"
            )
        if refs.shape == imgs.shape[1:]:
            refs = np.broadcast_to(refs, imgs.shape)
        if refs.shape != imgs.shape:
            raise ValueError(f"references shape {refs.shape} does not match images {imgs.shape}")
        pairs = zip(imgs, refs, strict=True)
        if n_jobs in (None, 1):
            results = (self.test(i, r, method) for i, r in pairs)
        else:
            from joblib import Parallel, delayed

            # A generator in input order, so the bar moves as each p-value arrives.
            results = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(self.test)(i, r, method) for i, r in pairs
            )
        bar = tqdm(results, total=len(imgs), desc=f"{method} p-values", disable=not verbose)
        return list(bar)
