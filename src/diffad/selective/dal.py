"""DAL-Test: selective p-value for the region a diffusion reconstruction flags.

Model: X = μ + ε and a reference X′ = μ′ + ε′, independent, ε ~ N(0, Σ) and ε′ ~ N(0, f·Σ)
with Σ known (f = 1 for one reference image, 1/n for the mean of n healthy images).
Selection: D(X) is the seeded reconstruction of the localizer (published DAL-Test setting:
T′ = 460, DDIM steps [460, 345, 230, 115, 0], η = 1), E = |K ∗ (D(X) − X)| with K a 3×3
mean filter (zero padding) and M = {i : E_i > λ}; for a DISYRE localiser
E = K ∗ (w ⊙ mean_k |R_k(X) − X|) over its restorations R_k (the localiser's
``region_tracer`` says which). Test H0: mean_M(μ) = mean_M(μ′) with
T = mean_M(X) − mean_M(X′), Var T = (1 + f)·1_Mᵀ Σ 1_M / |M|². Conditioning on M and on the
nuisance component, z = T / sd(T) is N(0, 1) truncated to {z : M(X(z)) = M_obs} along the
line X(z) = X − (z_obs − z)·Σ1_M / (|M|·sd(T)); see :mod:`diffad.selective.search` and
:mod:`diffad.selective.truncnorm` (two-sided p = 2·min(F, 1 − F)).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from diffad.device import resolve_device
from diffad.selective import METHODS, TERMINATIONS
from diffad.selective.comparators import bonferroni_p_value, permutation_p_value
from diffad.selective.covariance import NoiseCovariance
from diffad.selective.result import NO_REGION, SelectiveTestResult
from diffad.selective.search import check_batch_size, parametric_search
from diffad.selective.truncnorm import naive_p_value, truncated_p_value


class _Line(NamedTuple):
    """One test's inputs: the pair, Σ, the tracer, the selection and the line a + b·z."""

    x: np.ndarray
    ref: np.ndarray
    cov: NoiseCovariance
    tracer: Any
    m_obs: np.ndarray
    region: np.ndarray
    a: np.ndarray
    b: np.ndarray
    stat: float
    z: float
    reference_var_factor: float


class SelectiveTest:
    """Exact selective p-value (DAL-Test) for the region a diffusion localizer flags.

    Parameters
    ----------
    localizer : DDPMLocalizer or DisyreLocalizer
        A fitted localiser; the test traces the map its ``region_tracer`` describes
        (|K ∗ (D(X) − X)| for a DDPM, K ∗ (w ⊙ mean_k |R_k(X) − X|) for DISYRE).
    noise_var : float, array or matrix
        Noise covariance Σ of X and X′: a scalar *variance* (Σ = noise_var·I), per-pixel
        variances (image-shaped or flat), or a full (n, n) matrix over the C·H·W pixels
        (:class:`~diffad.selective.covariance.NoiseCovariance`). ``None`` (default) uses
        the localizer's estimate ``noise_var_`` from healthy images.
    lam : float, optional
        Threshold λ on the filtered reconstruction error. ``None`` (default) uses the
        localizer's ``lam_``, calibrated on healthy images (``calibrate``); the published
        synthetic setting is 0.8 for N(0, 1) pixels.
    filter_size : int
        Side of the mean filter K (odd).
    reference_var_factor : float, optional
        f, the noise covariance of the reference relative to Σ: 1 for one healthy image,
        1/n for the mean of n. ``None``: 1 for a reference passed to :meth:`test`, the
        localizer's ``reference_var_factor_`` for its default reference.
    t_start, ddim_steps : int, optional
        Reconstruction noise level and DDIM calls of a DDPM; default: the localizer's (the
        published DAL-Test setting is 460 and 5).
        Not for a DISYRE localiser (an error).
    seed : int
        Seed of the reconstruction noise (the selection is D with these fixed constants).
    termination : {"precision", "exhaustive", "decision"}
        Parametric search stopping rule (see :mod:`diffad.selective.search`). The default
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
        :func:`~diffad.selective.search.parametric_search`).
    alternative : {"two-sided", "abs"}
        Two-sided p-value definition (see :mod:`diffad.selective.truncnorm`).
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
        noise_var: Any = None,
        lam: float | None = None,
        filter_size: int = 3,
        reference_var_factor: float | None = None,
        t_start: int | None = None,
        ddim_steps: int | None = None,
        seed: int = 0,
        termination: str = "precision",
        precision: float = 1e-3,
        alpha: float = 0.05,
        z_max: float = 10.0,
        batch_size: int | None = None,
        spacing: float = 3.0,
        alternative: str = "two-sided",
        n_permutations: int = 1000,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.localizer = localizer
        self.noise_var = noise_var
        self.lam = lam
        self.filter_size = filter_size
        self.reference_var_factor = reference_var_factor
        self.t_start = t_start
        self.ddim_steps = ddim_steps
        self.seed = seed
        self.termination = termination
        self.precision = precision
        self.alpha = alpha
        self.z_max = z_max
        self.batch_size = batch_size
        self.spacing = spacing
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
        The trade-off is measured in ``docs/benchmarks/dal_test_speed.md``.
        """
        if self.batch_size is not None:
            return self.batch_size
        return 32 if n_pixels <= 256 else 16

    def _noise_var(self) -> Any:
        """``noise_var``, or the localizer's estimate ``noise_var_`` when it is None."""
        if self.noise_var is not None:
            return self.noise_var
        stored = getattr(self.localizer, "noise_var_", None)
        if stored is None:
            raise ValueError(
                "noise_var is needed: pass the noise variance of the images, or estimate it "
                "from healthy images with the localizer's calibrate()"
            )
        return stored

    def _check_params(self) -> None:
        if not hasattr(self.localizer, "model_"):
            raise ValueError("the localizer is not fitted: call fit() or load() first")
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        if self.termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {TERMINATIONS}, got {self.termination!r}")
        if self.alternative not in ("two-sided", "abs"):
            raise ValueError(f"alternative must be 'two-sided' or 'abs', got {self.alternative!r}")

    def _tracer(self, shape: tuple[int, int, int]) -> Any:
        """The localizer's region tracer for images of ``shape`` (built once, cached: it
        depends only on the model, the reconstruction settings, the seed and the filter)."""
        key = (shape, self.t_start, self.ddim_steps, int(self.seed), int(self.filter_size))
        cache = self.__dict__.setdefault("_tracer_cache", {})
        if key not in cache:
            overrides = {
                name: value
                for name, value in (("t_start", self.t_start), ("ddim_steps", self.ddim_steps))
                if value is not None
            }
            cache.clear()
            cache[key] = self.localizer.region_tracer(
                shape,
                seed=int(self.seed),
                filter_size=int(self.filter_size),
                device=resolve_device(self.device),
                **overrides,
            )
        return cache[key]

    def validate(self, shape: tuple[int, ...]) -> None:
        """Check the settings against the localiser for images of ``shape`` ((C, H, W) or
        (H, W)) and build the tracer, so that a setting that fails every image fails once,
        before a batch starts.

        Raises
        ------
        ValueError
            An unfitted localiser, a bad option, or one that does not apply to this localiser
            (``t_start`` for a DISYRE model).
        """
        self._check_params()
        shape3 = tuple(int(v) for v in (shape if len(shape) == 3 else (1, *shape)))
        self._tracer(shape3)

    def _lam(self) -> float:
        """``lam``, or the localizer's calibrated ``lam_`` when it is None."""
        lam = self.lam if self.lam is not None else getattr(self.localizer, "lam_", None)
        if lam is None:
            raise ValueError(
                "lam is needed: pass the threshold, or calibrate the localizer on healthy "
                "images (calibrate()) to get a default"
            )
        if not (np.isfinite(lam) and lam > 0):
            raise ValueError(f"lam must be > 0, got {lam}")
        return float(lam)

    def _reference(self, reference: Any) -> tuple[Any, float]:
        """The reference and its variance factor f (see the class docstring)."""
        if reference is not None:
            f = 1.0 if self.reference_var_factor is None else float(self.reference_var_factor)
            return reference, f
        stored = getattr(self.localizer, "reference_", None)
        if stored is None:
            raise ValueError(
                "reference is needed: pass a healthy image, or calibrate the localizer on "
                "healthy images (calibrate()) to use their mean"
            )
        f = getattr(self.localizer, "reference_var_factor_", 1.0)
        if self.reference_var_factor is not None:
            f = float(self.reference_var_factor)
        return stored, float(f)

    def _check_pair(self, image: Any, reference: Any) -> tuple[np.ndarray, np.ndarray, tuple]:
        x = np.asarray(image, dtype=np.float64)
        r = np.asarray(reference, dtype=np.float64)
        if r.ndim == 3 and x.ndim == 2 and r.shape[0] == 1:
            r = r[0]
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
        reference, f = self._reference(reference)
        x, ref, shape = self._check_pair(image, reference)
        tracer = self._tracer(x.shape)
        cov = NoiseCovariance(self._noise_var(), x.size, x.shape)
        m_obs = tracer.selection_map(x[None])[0] > self._lam()
        size = int(m_obs.sum())
        if size == 0:
            return None
        xf, rf = x.reshape(-1), ref.reshape(-1)
        ones = m_obs.astype(np.float64)
        s1 = cov.times(ones)
        sd = float(np.sqrt((1.0 + f) * (ones @ s1))) / size
        stat = float(xf[m_obs].mean() - rf[m_obs].mean())
        z = stat / sd
        # X(z) = a + b·z moves the image along the test direction with everything else
        # (the component independent of the statistic) held at its observed value.
        b = s1 / (size * sd)
        a = xf - z * b
        return _Line(x, ref, cov, tracer, m_obs, m_obs.reshape(shape), a, b, stat, z, f)

    def conditioning_line(
        self, image: Any, reference: Any = None
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

    def test(
        self, image: Any, reference: Any = None, method: str = "parametric"
    ) -> SelectiveTestResult:
        """p-value for the region selected in ``image`` against ``reference``.

        Parameters
        ----------
        image : array-like
            (H, W) or (C, H, W) in model layout and scale, sides divisible by the U-Net's
            down-sampling.
        reference : array-like, optional
            A healthy image of the same shape, independent of ``image``. ``None`` uses the
            localizer's ``reference_`` (the mean of its healthy calibration images).
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
            result.p_value = self._permutation(line, z)
        else:
            self._selective(result, line.tracer, line.a, line.b, z, line.m_obs, method)
        result.seconds = time.perf_counter() - start
        return result

    def _selective(self, result, tracer, a, b, z, m_obs, method) -> None:
        lam = self._lam()
        if method == "oc":
            lo, hi = tracer.oc_interval(a, b, z, lam)
            result.intervals = np.array([[lo, hi]])
            result.p_value = truncated_p_value(z, result.intervals, self.alternative)
            result.n_pieces = 1
            result.n_network_calls = tracer.calls_per_point
            return

        cache = tracer.new_cache()
        evaluate = tracer.piece_selector(a, b, z, lam, m_obs, cache)
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
        result.n_network_calls = cache.calls_run

    def _permutation(self, line: _Line, z: float) -> float:
        lam, cov, f = self._lam(), line.cov, line.reference_var_factor

        def z_of_pair(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
            masks = line.tracer.selection_map(xs) > lam
            xs, ys = xs.reshape(len(xs), -1), ys.reshape(len(ys), -1)
            out = np.zeros(len(xs))
            for i, m in enumerate(masks):
                k = int(m.sum())
                if k:
                    ones = m.astype(np.float64)
                    sd = float(np.sqrt((1.0 + f) * (ones @ cov.times(ones)))) / k
                    out[i] = (xs[i, m].mean() - ys[i, m].mean()) / sd
            return out

        return permutation_p_value(
            line.x, line.ref, z_of_pair, z, int(self.n_permutations), int(self.random_state)
        )

    def test_many(
        self,
        images: Any,
        references: Any = None,
        method: str = "parametric",
        n_jobs: int | None = 1,
        verbose: bool = False,
        backend: str = "joblib",
        address: str | None = None,
        gpus_per_task: float = 0,
        max_retries: int = 3,
    ) -> list[SelectiveTestResult]:
        """:meth:`test` over a batch, optionally in parallel with joblib or on Ray.

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W).
        references : array-like, optional
            One reference per image (same shape as ``images``), a single reference, or
            ``None`` for the localizer's default reference.
        method : str
            As in :meth:`test`.
        n_jobs : int or None
            joblib workers (-1 = all cores). With Ray: images tested at once (-1 or None:
            twice what the cluster can run at once); a local Ray instance started for the
            call gets this many CPUs.
        verbose : bool
            Show a progress bar over the images (one p-value can take seconds to minutes).
        backend : {"joblib", "ray"}
            ``"ray"``: one Ray task per image, on the running Ray instance, the cluster at
            ``address`` or a new local instance (shut down afterwards); the test is shipped
            once through Ray's object store. Needs ``pip install 'diffad[ray]'``.
        address : str, optional
            Ray cluster address (``"auto"``, ``"ray://head:10001"``); Ray only.
        gpus_per_task : float
            GPUs each Ray task requests (0: none, Ray then hides the GPUs from the task).
        max_retries : int
            Times Ray reruns a task whose worker process died.

        Returns
        -------
        list of SelectiveTestResult
            One per image, in input order.

        Raises
        ------
        ValueError or RuntimeError
            A test that fails stops the batch and its error is raised, on every backend. To
            keep the other results and record errors, use
            :func:`diffad.selective.batch.iter_tests` (as ``diffad test --out`` does).
        """
        from diffad.selective.batch import check_backend

        check_backend(backend, address, gpus_per_task, max_retries, n_jobs)
        imgs = np.asarray(images, dtype=np.float64)
        if imgs.ndim not in (3, 4) or len(imgs) == 0:
            raise ValueError(
                f"images must be a non-empty (N, H, W) or (N, C, H, W), got {imgs.shape}"
            )
        if references is None:
            refs = [None] * len(imgs)
        else:
            refs = np.asarray(references, dtype=np.float64)
            if refs.shape == imgs.shape[1:]:
                refs = np.broadcast_to(refs, imgs.shape)
            if refs.shape != imgs.shape:
                raise ValueError(
                    f"references shape {refs.shape} does not match images {imgs.shape}"
                )
        if backend == "ray":
            from diffad.selective.ray_backend import ray_test_many

            return ray_test_many(
                self, imgs, refs, method, n_jobs=n_jobs, verbose=verbose, address=address,
                gpus_per_task=gpus_per_task, max_retries=max_retries,
            )  # fmt: skip
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
