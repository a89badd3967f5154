"""DAL-Test: selective p-value for the region a diffusion reconstruction flags.

Model: X = μ + ε and a reference X′ = μ′ + ε′, independent, ε ~ N(0, Σ) and ε′ ~ N(0, f·Σ)
with Σ known (f = 1 for one reference image, 1/n for the mean of n healthy images).
Selection: M = {i : E_i > λ} on the localiser's region map E
(:mod:`diffad.image.region_maps`): for a DDPM E = |K ∗ (D(X) − X)| with D(X) its seeded
reconstruction (published DAL-Test setting: T′ = 460, DDIM steps [460, 345, 230, 115, 0],
η = 1) and K a 3×3 mean filter (zero padding); for a DISYRE localiser
E = K ∗ (w ⊙ mean_k |R_k(X) − X|) over its restorations R_k. Test H0: mean_M(μ) = mean_M(μ′) with
T = mean_M(X) − mean_M(X′), Var T = (1 + f)·1_Mᵀ Σ 1_M / |M|². Conditioning on M and on the
nuisance component, z = T / sd(T) is N(0, 1) truncated to {z : M(X(z)) = M_obs} along the
line X(z) = X − (z_obs − z)·Σ1_M / (|M|·sd(T)); see :mod:`diffad.selective.search` and
:mod:`diffad.selective.truncnorm` (two-sided p = 2·min(F, 1 − F)).
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import NotFittedError
from tqdm.auto import tqdm

from diffad.checkpoint import load_checkpoint, save_checkpoint
from diffad.device import resolve_device
from diffad.image import MIN_CALIBRATION_IMAGES
from diffad.selective import DEFAULT_METHOD, DEFAULT_NULL, METHODS, NULL_METHODS, TERMINATIONS
from diffad.selective.comparators import bonferroni_p_value, permutation_p_value
from diffad.selective.covariance import NoiseCovariance
from diffad.selective.fission import NULLS, fission_pair, null_p_value
from diffad.selective.noise import NOISE_KINDS, estimate_noise_model
from diffad.selective.noise_check import region_mean_check
from diffad.selective.rank import RANK_PERCENTILE, rank_p_value, rank_statistic
from diffad.selective.region_tracer import RegionTestable, region_tracer
from diffad.selective.result import NO_REGION, SelectiveTestResult
from diffad.selective.search import check_batch_size, parametric_search
from diffad.selective.tiles import TileSelected, tile_grid
from diffad.selective.truncnorm import naive_p_value, truncated_p_value

_KIND = "SelectiveTest"
#: What a region can be selected on (the ``selection`` parameter).
SELECTIONS = ("region", "shown")
#: The methods that select on the shown map too (the others trace the region map).
SHOWN_METHODS = ("rank", "fission")
#: The fitted state :meth:`SelectiveTest.calibrate` sets (and :meth:`SelectiveTest.save` keeps).
_CALIBRATION = (
    "reference_", "reference_var_factor_", "noise_var_", "noise_kind_", "lam_", "check_images_",
    "lam_fission_", "lam_rank_", "null_z_",
)  # fmt: skip


def healthy_null_of(method: str, null: str) -> tuple[str, str] | None:
    """(statistic, null) of the healthy null images ``method`` is compared with, or None when
    it needs none: ``rank`` ranks its own statistic (conformal); fission and naive use their
    own statistic unless ``null`` is Gaussian."""
    if method == "rank":
        return "rank", "conformal"
    if method in NULL_METHODS and null != "gaussian":
        return method, null
    return None


def _z_or_nan(result: SelectiveTestResult) -> float:
    """The statistic of a result, NaN when no region was selected."""
    return np.nan if result.z is None else float(result.z)


def _region_line(
    xf: np.ndarray, rf: np.ndarray, region: np.ndarray, cov: NoiseCovariance, f: float
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(stat, z, a, b) of a region (flat bool): the mean difference against the reference, its
    z, and the line X(z) = a + b·z that moves the image along the test direction with
    everything else (the component independent of the statistic) held at its observed value."""
    sd = cov.mean_sd(region, f)
    stat = float(xf[region].mean() - rf[region].mean())
    z = stat / sd
    b = cov.times(region.astype(np.float64)) / (int(region.sum()) * sd)
    return stat, z, xf - z * b, b


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
    """p-values for the region a diffusion localizer flags: the rank test (``method="rank"``,
    :mod:`diffad.selective.rank`), data fission, and the exact selective DAL-Test.

    The test selects on the localiser's own region map (its ``region_map_definition()``:
    the same model, chain and noise draws as its ``localize``), so the region tested comes from
    the reconstruction the localiser shows; with ``selection="shown"``, rank and fission select
    on the very map it shows. A localiser setting that changes the map (``t_start``,
    ``ddim_steps``, ``seed`` of a DDPM) is set on the localiser.

    Parameters
    ----------
    localizer : DDPMLocalizer or DisyreLocalizer
        A fitted localiser (any object with ``prepare``, ``image_shape_`` and
        ``region_map_definition``: :class:`~diffad.selective.region_tracer.RegionTestable`).
    noise_var : float, array or matrix
        Noise covariance Σ of X and X′: a scalar *variance* (Σ = noise_var·I), per-pixel
        variances (image-shaped or flat), or a full (n, n) matrix over the C·H·W pixels
        (:class:`~diffad.selective.covariance.NoiseCovariance`). ``None`` (default) uses
        the estimate ``noise_var_`` of :meth:`calibrate`.
    lam : float, optional
        Threshold λ on the region map, for every method. ``None`` (default) uses the calibrated
        ``lam_`` (``lam_fission_`` for fission, whose map is that of X + τZ); the published
        synthetic setting is 0.8 for N(0, 1) pixels. ``rank`` always uses the calibrated
        ``lam_rank_``, the level its healthy statistics were computed at.
    filter_size : int
        Side of the mean filter K (odd).
    reference_var_factor : float, optional
        f, the noise covariance of the reference relative to Σ: 1 for one healthy image,
        1/n for the mean of n. ``None``: 1 for a reference passed to :meth:`test`,
        ``reference_var_factor_`` for the calibrated reference (0 for paired references).
    method : str
        Default method of :meth:`test`: ``"parametric"``, the exact DAL-Test, or
        ``"fission"`` (:mod:`diffad.selective.fission`); see :meth:`test` for all of them.
    tau : float
        τ of data fission: select on X + τZ, test on X − Z/τ.
    tile_size : int
        Side in pixels of the fixed tiles of ``method="tile"`` (:mod:`diffad.selective.tiles`).
    selection : {"region", "shown"}
        The map ``rank`` and ``fission`` select on: ``"region"`` (default), the localiser's
        region map, which the exact tests trace; ``"shown"``, the map ``localize`` shows (its
        ``score``: SSIM-ens, L1, …), which needs no tracing. The exact tests, ``naive``,
        Bonferroni and permutations always select on the region map.
    null : {"gaussian", "scaled", "conformal"}
        What the fission (and naive) statistic is compared with
        (:mod:`diffad.selective.fission`); ``"scaled"`` and ``"conformal"`` use the statistics
        of the healthy null images set aside by :meth:`calibrate`.
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

    Attributes
    ----------
    reference_ : numpy.ndarray
        (C, H, W) mean of the calibration images that estimated the noise (set by
        :meth:`calibrate`, like the attributes below).
    reference_var_factor_ : float
        f of that reference (1/n).
    noise_var_ : float or numpy.ndarray
        The estimated Σ (:func:`~diffad.selective.noise.estimate_noise_model`).
    noise_kind_ : str
        Its form.
    lam_ : float or None
        The calibrated λ of the region map (None with ``selection="shown"``).
    check_images_ : numpy.ndarray
        Healthy images kept aside for the healthy calibration check (model layout).
    check_references_ : numpy.ndarray or None
        Their paired references (None without paired references).
    offset_ : numpy.ndarray or None
        With paired references: the mean residual added to each image's reference.
    lam_fission_ : float
        λ of the fission selection (the same percentile of healthy maps of X + τZ).
    lam_rank_ : float or None
        λ of the rank test's components (:mod:`diffad.selective.rank`); None in a calibration
        saved before the rank test had its own level (recalibrate to use ``rank``).
    null_z_ : dict
        Method → the statistic on the healthy null images: for ``"fission"`` and ``"naive"``
        the signed z (NaN: no region), for ``"rank"`` max |z| over the components (0: none).
    noise_check_ : RegionMeanCheck
        :func:`~diffad.selective.noise_check.region_mean_check` on held-out healthy residuals.
    """

    def __init__(
        self,
        localizer: Any,
        noise_var: Any = None,
        lam: float | None = None,
        filter_size: int = 3,
        reference_var_factor: float | None = None,
        method: str = "parametric",
        tau: float = 1.0,
        tile_size: int = 8,
        selection: str = "region",
        null: str = "gaussian",
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
        self.method = method
        self.tau = tau
        self.tile_size = tile_size
        self.selection = selection
        self.null = null
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
        state.pop("_cov_cache", None)
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
        """``noise_var``, or the calibrated estimate ``noise_var_`` when it is None."""
        if self.noise_var is not None:
            return self.noise_var
        stored = getattr(self, "noise_var_", None)
        if stored is None:
            raise NotFittedError(
                "noise_var is needed: pass the noise variance of the images, or estimate it "
                "from healthy images with calibrate()"
            )
        return stored

    def _check_params(self) -> None:
        if not hasattr(self.localizer, "image_shape_"):
            raise NotFittedError("the localizer is not fitted: call fit() or load() first")
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        if self.termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {TERMINATIONS}, got {self.termination!r}")
        if self.alternative not in ("two-sided", "abs"):
            raise ValueError(f"alternative must be 'two-sided' or 'abs', got {self.alternative!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.null not in NULLS:
            raise ValueError(f"null must be one of {NULLS}, got {self.null!r}")
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if int(self.tile_size) != self.tile_size or self.tile_size < 1:
            raise ValueError(f"tile_size must be an integer >= 1, got {self.tile_size}")

    def _check_method(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if self.selection == "shown" and method not in SHOWN_METHODS:
            raise ValueError(
                f"method {method!r} traces the region map: selection='shown' works with "
                f"{' and '.join(SHOWN_METHODS)}"
            )

    def _selection_maps(self, images: np.ndarray, calibrating: bool = False) -> np.ndarray:
        """The maps (N, C·H·W) that ``rank`` and ``fission`` select on, of prepared images
        (outside :meth:`calibrate`, on the map the calibration was made on)."""
        calibrated = getattr(self, "selection_", self.selection)
        if not calibrating and self.selection != calibrated:
            raise ValueError(
                f"selection={self.selection!r}, but the test was calibrated with "
                f"{calibrated!r}: its λ and healthy statistics belong to that map (recalibrate)"
            )
        images = np.asarray(images, dtype=np.float64)
        if self.selection == "region":
            return self._tracer(images.shape[1:]).selection_map(images)
        maps = np.asarray(self.localizer.shown_maps(images), dtype=np.float64)
        # A pixel of the shown map selects that pixel in every channel.
        return np.repeat(maps[:, None], images.shape[1], axis=1).reshape(len(images), -1)

    def _tracer(self, shape: tuple[int, int, int]) -> Any:
        """The tracer of the localiser's region map for images of ``shape``. Built once and
        cached while the localiser, its fitted network and its map settings stay the same."""
        fitted = tuple(
            id(getattr(self.localizer, name, None)) for name in ("model_", "foreground_")
        )
        key = (shape, int(self.filter_size), repr(self._map_settings()), fitted)
        cache = self.__dict__.setdefault("_tracer_cache", {})
        if key not in cache:
            cache.clear()
            definition = self.localizer.region_map_definition()
            # The definition is kept with the tracer: the ids in the key stay those of live
            # objects for as long as the entry lives.
            device = resolve_device(self.device)
            tracer = region_tracer(definition, shape, int(self.filter_size), device)
            cache[key] = (tracer, definition)
        return cache[key][0]

    def _covariance(self, shape: tuple[int, ...]) -> NoiseCovariance:
        """Σ of images of ``shape`` (validated, and factored for sampling, once)."""
        noise_var = self._noise_var()
        key = (tuple(shape), id(noise_var))
        cached = self.__dict__.get("_cov_cache")
        if cached is None or cached[0] != key:
            cov = NoiseCovariance(noise_var, int(np.prod(shape)), tuple(shape))
            self.__dict__["_cov_cache"] = cached = (key, cov, noise_var)
        return cached[1]

    def _map_settings(self) -> dict[str, Any]:
        """The localiser parameters its map depends on (all but how it runs)."""
        params = self.localizer.get_params(deep=False)
        return {k: v for k, v in params.items() if k not in ("device", "verbose", "batch_size")}

    def validate(self, shape: tuple[int, ...], method: str | None = None) -> None:
        """Check the settings against the localiser for images of ``shape`` ((C, H, W) or
        (H, W)) and build the tracer, so that a setting that fails every image fails once,
        before a batch starts: the options, the noise covariance, λ and (for ``method``,
        default ``self.method``) the null it needs.

        Raises
        ------
        ValueError
            A bad option, or a localiser whose map cannot be traced (``n_samples`` > 1).
        NotFittedError
            An unfitted localiser, or a setting that only calibration provides.
        """
        self._check_params()
        method = self.method if method is None else method
        self._check_method(method)
        shape3 = tuple(int(v) for v in (shape if len(shape) == 3 else (1, *shape)))
        if self.selection == "region":
            self._tracer(shape3)
        self._covariance(shape3)
        if method == "fission":
            self._fission_lam()
        elif method == "rank":
            self._lam_rank()
        else:
            self._lam()
        source = healthy_null_of(method, self.null)
        if source is not None:
            self._null_z(*source)

    def _lam(self) -> float:
        """``lam``, or the calibrated ``lam_`` when it is None."""
        lam = self.lam if self.lam is not None else getattr(self, "lam_", None)
        if lam is None:
            raise NotFittedError(
                "lam is needed: pass the threshold, or calibrate() the test on healthy images "
                "to get a default"
            )
        if not (np.isfinite(lam) and lam > 0):
            raise ValueError(f"lam must be > 0, got {lam}")
        return float(lam)

    def _reference(self, reference: Any) -> tuple[Any, float]:
        """The reference and its variance factor f (see the class docstring)."""
        offset = getattr(self, "offset_", None)
        if offset is not None:
            # Paired references: the image's own reference plus the healthy offset; Σ is the
            # residuals' covariance, which holds the reference's noise (f = 0).
            if reference is None:
                raise ValueError(
                    "this test was calibrated with paired references: pass the image's reference"
                )
            f = 0.0 if self.reference_var_factor is None else float(self.reference_var_factor)
            return np.asarray(reference, dtype=np.float64) + offset.reshape(np.shape(reference)), f
        if reference is not None:
            f = 1.0 if self.reference_var_factor is None else float(self.reference_var_factor)
            return reference, f
        stored = getattr(self, "reference_", None)
        if stored is None:
            raise NotFittedError(
                "reference is needed: pass a healthy image, or calibrate() the test on "
                "healthy images to use their mean"
            )
        f = getattr(self, "reference_var_factor_", 1.0)
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
        expected = tuple(self.localizer.image_shape_)
        if tuple(shape3) != expected:
            raise ValueError(f"image shape {x.shape} does not match the model's {expected}")
        return x.reshape(shape3), r.reshape(shape3), x.shape

    # ------------------------------------------------------------------ calibration
    def calibrate(
        self,
        healthy_images: Any,
        references: Any = None,
        check_fraction: float = 0.25,
        null_fraction: float = 0.5,
        noise_kind: str = "auto",
        lam_percentile: float = 99.0,
        rank_percentile: float = RANK_PERCENTILE,
    ) -> SelectiveTest:
        """Reference, noise model, λ and the healthy nulls, from healthy images the model never
        saw.

        The images (prepared by the localiser) are split at random (seeded by
        ``random_state``) into three parts:

        - ``check_fraction`` of them: ``check_images_``, the healthy calibration check;
        - of the rest, ``null_fraction``: the null images, on which the fission and naive
          statistics are computed for ``null="scaled"``/``"conformal"`` (``null_z_``) and the
          noise model is checked (``noise_check_``, with the check images);
        - the others estimate the reference (their mean; with paired ``references``, the mean
          residual added to each image's own reference), the noise covariance and λ (the
          ``lam_percentile``-th percentile of their region-map pixels, so that about 1 % of a
          healthy image's pixels are selected; ``lam_fission_`` likewise on X + τZ;
          ``lam_rank_`` the ``rank_percentile``-th, so that the rank test has candidate
          regions in most images).

        Parameters
        ----------
        healthy_images : array-like
            Healthy images (at least ``MIN_CALIBRATION_IMAGES``), as the localiser reads them.
        references : array-like, optional
            One healthy reference per image, read the same way (e.g. the same-position slice of
            a registered healthy brain). The test then needs each tested image's reference.
        check_fraction : float
            Share kept aside for the healthy calibration check.
        null_fraction : float
            Share of the rest used as null images.
        noise_kind : {"auto", "tapered", "local", "full", "pixel", "scalar"}
            Form of the noise covariance (:func:`~diffad.selective.noise.estimate_noise_model`).
        lam_percentile : float
            Percentile of the healthy region-map pixels that becomes λ.
        rank_percentile : float
            Percentile that becomes λ_rank (default 90; the choice is measured in
            docs/benchmarks/region_power.md).

        Returns
        -------
        self
        """
        self._check_params()
        data = self._prepare_checked(healthy_images)
        refs = None if references is None else self._prepare_checked(references)
        if refs is not None and refs.shape != data.shape:
            raise ValueError(f"{len(refs)} references for {len(data)} healthy images")
        if len(data) < MIN_CALIBRATION_IMAGES:
            raise ValueError(
                f"need at least {MIN_CALIBRATION_IMAGES} healthy calibration images, "
                f"got {len(data)}"
            )
        for name, value in (("check_fraction", check_fraction), ("null_fraction", null_fraction)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if noise_kind not in NOISE_KINDS:
            raise ValueError(f"noise_kind must be one of {NOISE_KINDS}, got {noise_kind!r}")
        for name, value in (("lam_percentile", lam_percentile),
                            ("rank_percentile", rank_percentile)):  # fmt: skip
            if not 50 <= value < 100:
                raise ValueError(f"{name} must be in [50, 100), got {value}")
        perm = np.random.default_rng(int(self.random_state)).permutation(len(data))
        n_check = min(max(1, int(round(check_fraction * len(data)))), len(data) - 2)
        n_null = min(int(round(null_fraction * (len(data) - n_check))), len(data) - n_check - 2)
        # The check images stay in random order: any first k of them are a random sample.
        check, null = perm[:n_check], np.sort(perm[n_check : n_check + n_null])
        est = np.sort(perm[n_check + n_null :])
        pick = (lambda idx: None) if refs is None else (lambda idx: refs[idx])  # noqa: E731
        model = estimate_noise_model(data[est], noise_kind, pick(est))
        shape = tuple(data.shape[1:])
        est64 = np.asarray(data[est], dtype=np.float64)
        # The region map's λ (the exact tests) only where that map is selected on, so that a
        # localiser whose map cannot be traced still gets rank and fission on its shown map.
        selection_maps = self._selection_maps(est64, calibrating=True)
        region_lam = None
        if self.selection == "region":
            region_lam = float(np.percentile(selection_maps, lam_percentile))
        fitted: dict[str, Any] = {
            "noise_var_": model.noise_var,
            "noise_kind_": model.kind,
            "reference_var_factor_": float(model.reference_var_factor),
            "offset_": None if refs is None else model.reference.astype(np.float64),
            "reference_": model.reference.astype(np.float64) if refs is None else None,
            "lam_": region_lam,
            "lam_rank_": float(np.percentile(selection_maps, rank_percentile)),
            "check_images_": data[check],
            "selection_": self.selection,
            "check_references_": pick(check),
        }
        # The rest is computed on a copy that holds the new settings (its Σ is validated and
        # factored once), so that this test changes only once everything is computed.
        work = copy.copy(self)
        work.__dict__.pop("_cov_cache", None)
        work.__dict__.update(fitted)
        cov = work._covariance(shape)
        selected_on = np.stack(
            [fission_pair(x, cov, float(self.tau), int(self.random_state))[0] for x in est64]
        )
        fitted["lam_fission_"] = float(
            np.percentile(work._selection_maps(selected_on, calibrating=True), lam_percentile)
        )
        work.lam_fission_ = fitted["lam_fission_"]
        fitted["null_z_"] = {
            method: np.array(
                [
                    _z_or_nan(work.test_prepared(data[i], pick(i), method, null="gaussian"))
                    for i in null
                ]
            )
            for method in NULL_METHODS
            if self.selection == "region" or method in SHOWN_METHODS
        }
        fitted["null_z_"]["rank"] = work.rank_statistics(data[null], pick(null))
        held_out = np.concatenate([null, check])
        own = fitted["reference_"] if refs is None else refs[held_out] + fitted["offset_"]
        varying = est64.var(axis=0).max(axis=0)
        fitted["noise_check_"] = region_mean_check(
            np.asarray(data[held_out], dtype=np.float64) - own, model.noise_var,
            fitted["reference_var_factor_"],
            foreground=varying > 0.01 * float(np.median(varying[varying > 0])),
        )  # fmt: skip
        self.__dict__.update(fitted)
        self.__dict__["_cov_cache"] = work.__dict__["_cov_cache"]  # Σ of these images, factored
        return self

    def recommended_test(self, alpha: float) -> tuple[str, str, str]:
        """The most powerful valid region test this calibration allows at level ``alpha``
        (measured in docs/benchmarks/region_power.md), as ``(method, null, reason)``:

        ``rank`` when the calibration has λ_rank and more than 1/α − 1 healthy null images
        (so that its smallest p-value, 1/(m + 1), is below α), else fission against
        ``DEFAULT_NULL`` when at least two null images had a fission region, else (no healthy
        null statistics) the exact DAL-Test.
        """
        null_z = getattr(self, "null_z_", None) or {}
        has_rank = getattr(self, "lam_rank_", None) is not None
        ranked = len(null_z.get("rank", [])) if has_rank else 0
        scaled = int(np.isfinite(null_z.get("fission", [])).sum())
        if ranked + 1 > 1 / alpha:
            return (
                DEFAULT_METHOD,
                "conformal",
                (f"rank: the most extreme flagged component among {ranked} healthy images"),
            )
        if scaled >= 2:
            why = (f"only {ranked} healthy null images" if ranked
                   else "the calibration has no rank statistics (recalibrate)")  # fmt: skip
            return (
                "fission",
                DEFAULT_NULL,
                (f"fission: {why}, too few for a rank p-value below alpha = {alpha:g}"),
            )
        if self.selection == "shown":
            return "fission", "gaussian", "fission, Gaussian null: no healthy null statistics"
        return "parametric", "gaussian", "the exact DAL-Test: no healthy null statistics"

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`calibrate` (or :meth:`load`) has set the reference, Σ and λ."""
        return all(hasattr(self, name) for name in _CALIBRATION)

    def save(self, path: str | Path) -> Path:
        """Write the calibration, ``filter_size``, ``tau`` and ``selection`` (the λ values
        belong to them) to a checkpoint folder (JSON + safetensors).

        Raises
        ------
        NotFittedError
            Before :meth:`calibrate`.
        """
        if not self.calibrated:
            raise NotFittedError("calibrate() the test before saving it")
        config = {
            "filter_size": int(self.filter_size),
            "tau": float(self.tau),
            "selection": self.selection_,
            "reference_var_factor": self.reference_var_factor_,
            "noise_kind": self.noise_kind_,
            "lam": self.lam_,
            "lam_fission": self.lam_fission_,
            "lam_rank": self.lam_rank_,
            "noise_check": self.noise_check_.to_dict(),
        }
        tensors = {
            "noise_var": np.asarray(self.noise_var_, dtype=np.float64),
            "check_images": np.asarray(self.check_images_),
            **{f"null_z.{k}": np.asarray(v) for k, v in self.null_z_.items()},
        }
        optional = {
            "reference": self.reference_,
            "offset": self.offset_,
            "check_references": self.check_references_,
        }
        tensors.update({k: np.asarray(v) for k, v in optional.items() if v is not None})
        return save_checkpoint(path, _KIND, config, tensors)

    @classmethod
    def load(cls, path: str | Path, localizer: RegionTestable, **params: Any) -> SelectiveTest:
        """A calibrated test of ``localizer`` from a folder written by :meth:`save`.

        ``params`` are the constructor's (``filter_size``, ``tau`` and ``selection`` come from
        the folder).

        Raises
        ------
        ValueError
            A missing or unreadable folder.
        """
        from diffad.selective.noise_check import RegionMeanCheck

        fixed = sorted({"filter_size", "tau", "selection"} & set(params))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} come(s) from the calibration in {path}: recalibrate to change"
            )
        config, tensors = load_checkpoint(path, _KIND)
        arrays = {k: v.numpy() for k, v in tensors.items()}
        try:
            test = cls(
                localizer, filter_size=int(config["filter_size"]), tau=float(config["tau"]),
                selection=str(config.get("selection", "region")), **params,
            )  # fmt: skip
            test.reference_var_factor_ = float(config["reference_var_factor"])
            test.noise_kind_ = str(config["noise_kind"])
            test.lam_ = None if config["lam"] is None else float(config["lam"])
            test.lam_fission_ = float(config["lam_fission"])
            test.lam_rank_ = None if config.get("lam_rank") is None else float(config["lam_rank"])
            test.selection_ = test.selection
            test.noise_check_ = RegionMeanCheck(**config["noise_check"])
            noise_var = arrays["noise_var"]
            test.noise_var_ = float(noise_var) if noise_var.ndim == 0 else noise_var
            test.check_images_ = arrays["check_images"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a complete region-test calibration: {err}") from err
        test.reference_ = arrays.get("reference")
        test.offset_ = arrays.get("offset")
        test.check_references_ = arrays.get("check_references")
        prefix = "null_z."
        test.null_z_ = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        return test

    # ------------------------------------------------------------------ testing
    def _line(self, image: Any, reference: Any) -> _Line | None:
        """Everything the test conditions on, or None when no region is selected."""
        self._check_params()
        reference, f = self._reference(reference)
        x, ref, shape = self._check_pair(image, reference)
        tracer = self._tracer(x.shape)
        cov = self._covariance(x.shape)
        m_obs = tracer.selection_map(x[None])[0] > self._lam()
        if not m_obs.any():
            return None
        stat, z, a, b = _region_line(x.reshape(-1), ref.reshape(-1), m_obs, cov, f)
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
        self, image: Any, reference: Any = None, method: str | None = None
    ) -> SelectiveTestResult:
        """p-value for the region selected in ``image`` against ``reference``.

        Parameters
        ----------
        image : array-like
            One image as the localiser reads it ((H, W), (C, H, W) or a picture); the
            localiser's stored preprocessing is applied.
        reference : array-like, optional
            A healthy image read the same way, independent of ``image``. ``None`` uses
            ``reference_`` (the mean of healthy calibration images).
        method : str
            One of "rank", "fission", "parametric", "tile", "oc", "naive", "bonferroni",
            "permutation"; default: the ``method`` parameter. ``rank`` tests the most extreme
            connected component of the map at λ_rank, ranked among the healthy null images (a
            conformal p-value, :mod:`diffad.selective.rank`; the product's default);
            ``parametric`` is the exact DAL-Test p-value; ``tile`` is exact too, conditioned
            only on fixed tiles having a pixel above λ (:mod:`diffad.selective.tiles`); ``oc``
            over-conditions on every decision (valid, less power); ``fission`` selects on
            X + τZ and tests on X − Z/τ against ``null`` (no search); ``naive`` ignores the
            selection (invalid against the Gaussian null, a conformal rank of the region at λ
            against ``"conformal"``); ``bonferroni`` and ``permutation`` are comparators.

        Returns
        -------
        SelectiveTestResult
        """
        x = self._prepare_one(image)
        ref = None if reference is None else self._prepare_one(reference)
        return self.test_prepared(x, ref, method)

    def _prepare(self, images: Any) -> np.ndarray:
        """A batch in model layout and scale by the localiser's preprocessing; without stored
        preprocessing the images as given, in float64 (the test's own precision)."""
        if getattr(self.localizer, "preprocessing_", None) is None:
            return np.asarray(images, dtype=np.float64)
        return self.localizer.prepare(images)

    def _prepare_checked(self, images: Any) -> np.ndarray:
        """:meth:`_prepare` after the localiser's checks of shape and channels: the healthy
        images of :meth:`calibrate` get exactly the preprocessing a tested image gets."""
        checked = self.localizer.prepare(images)
        if getattr(self.localizer, "preprocessing_", None) is not None:
            return checked
        return np.asarray(images, dtype=np.float64).reshape(checked.shape)

    def _prepare_one(self, image: Any) -> np.ndarray:
        """One image (see :meth:`_prepare`)."""
        if isinstance(image, np.ndarray) and image.ndim not in (2, 3):
            raise ValueError(f"image must be (H, W) or (C, H, W), got shape {image.shape}")
        return self._prepare(image[None] if isinstance(image, np.ndarray) else [image])[0]

    def test_prepared(
        self,
        image: Any,
        reference: Any = None,
        method: str | None = None,
        null: str | None = None,
    ) -> SelectiveTestResult:
        """:meth:`test` of an image already in model layout and scale, such as
        ``LocalizationResult.image[i]`` or ``check_images_[i]`` (no preprocessing applied);
        ``null`` overrides the ``null`` parameter for this call."""
        start = time.perf_counter()
        method = self.method if method is None else method
        null = self.null if null is None else null
        self._check_method(method)
        if null not in NULLS:
            raise ValueError(f"null must be one of {NULLS}, got {null!r}")
        if (
            reference is not None
            and healthy_null_of(method, null) is not None
            and getattr(self, "offset_", None) is None
            and getattr(self, "reference_", None) is not None
        ):
            # The healthy null images were scored against reference_: a tested image scored
            # against another reference is no longer exchangeable with them.
            raise ValueError(
                f"{method} compares with healthy images scored against the calibrated "
                "reference: pass no reference, or calibrate with paired references"
            )
        if method in ("fission", "rank", "tile"):
            if method == "fission":
                result = self._fission(image, reference, null)
            else:
                result = (self._rank if method == "rank" else self._tile)(image, reference)
            result.seconds = time.perf_counter() - start
            return result
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
            result.null = null
            result.p_value = null_p_value(z, null, self._null_z("naive", null))
        elif method == "bonferroni":
            result.null = "bonferroni"
            result.p_value = bonferroni_p_value(z, line.x.size)
        elif method == "permutation":
            result.null = "permutation"
            result.p_value = self._permutation(line, z)
        else:
            result.null = "selective"
            self._selective(result, line.tracer, line.a, line.b, z, line.m_obs, method)
        result.seconds = time.perf_counter() - start
        return result

    def _fission_lam(self) -> float:
        """λ of the fission selection: ``lam`` when given, else the calibrated ``lam_fission_``."""
        lam = self.lam if self.lam is not None else getattr(self, "lam_fission_", None)
        if lam is None:
            raise NotFittedError("fission needs lam, or calibrate() the test on healthy images")
        return float(lam)

    def _null_z(self, method: str, null: str) -> np.ndarray | None:
        """The healthy null statistics of ``method`` (None for the Gaussian null)."""
        if null == "gaussian":
            return None
        stored = getattr(self, "null_z_", None)
        if stored is None or method not in stored:
            raise NotFittedError(f"null={null!r} needs calibrate() on healthy images")
        if len(stored[method]) == 0:
            raise ValueError(
                f"null={null!r} needs healthy null images: calibrate() with null_fraction > 0"
            )
        return stored[method]

    def _lam_rank(self) -> float:
        if not hasattr(self, "lam_rank_"):
            raise NotFittedError("the rank test needs calibrate() on healthy images")
        if self.lam_rank_ is None:
            raise NotFittedError(
                "this calibration predates the rank test: recalibrate it (diffad train-image, "
                "or SelectiveTest.calibrate)"
            )
        return float(self.lam_rank_)

    def rank_statistics(self, images: Any, references: Any = None) -> np.ndarray:
        """S (:mod:`diffad.selective.rank`) of each image, 0 where no component passes
        λ_rank: the statistic the ``rank`` p-value compares with ``null_z_["rank"]``.

        Parameters
        ----------
        images : array-like
            Images already in model layout and scale (N, C, H, W), as :meth:`test_prepared`
            takes them.
        references : array-like, optional
            One reference per image, as for :meth:`test_prepared`.

        Returns
        -------
        numpy.ndarray of shape (N,)
        """
        images = np.asarray(images, dtype=np.float64)
        maps = self._selection_maps(images)  # one batch through the network
        out = np.zeros(len(images))
        for i, x in enumerate(images):
            found = self._rank_component(x, None if references is None else references[i],
                                         maps[i])  # fmt: skip
            out[i] = 0.0 if found is None else abs(found[0].z)
        return out

    def _rank_component(
        self, image: Any, reference: Any, emap: np.ndarray | None = None
    ) -> tuple[Any, tuple] | None:
        """The most extreme component of one image (and the image's shape), or None; ``emap``
        is its selection map when already computed."""
        reference, f = self._reference(reference)
        x, ref, shape = self._check_pair(image, reference)
        if emap is None:
            emap = self._selection_maps(x[None])[0]
        found = rank_statistic(emap, self._lam_rank(), x, ref, self._covariance(x.shape), f)
        return None if found is None else (found, shape)

    def _rank(self, image: Any, reference: Any) -> SelectiveTestResult:
        """The most extreme component at λ_rank, ranked among the healthy null images."""
        self._check_params()
        self._lam_rank()  # before the network runs
        found = self._rank_component(image, reference)
        if found is None:
            return SelectiveTestResult(
                "rank", None, None, None, None, np.zeros(np.shape(image), dtype=bool), 0,
                message=NO_REGION, null="conformal",
            )  # fmt: skip
        best, shape = found
        p = rank_p_value(best.z, self._null_z("rank", "conformal"))
        region = best.region.reshape(shape)
        return SelectiveTestResult(
            "rank", p, naive_p_value(best.z), best.stat, best.z, region, int(region.sum()),
            null="conformal",
        )  # fmt: skip

    def _fission(self, image: Any, reference: Any, null: str) -> SelectiveTestResult:
        """Data fission: the region of X + τZ, its mean tested on X − Z/τ (no search)."""
        self._check_params()
        reference, f = self._reference(reference)
        x, ref, shape = self._check_pair(image, reference)
        cov = self._covariance(x.shape)
        tau = float(self.tau)
        selected_on, tested_on = fission_pair(x, cov, tau, int(self.random_state))
        lam = self._fission_lam()
        m = self._selection_maps(selected_on[None])[0] > lam
        size = int(m.sum())
        if size == 0:
            return SelectiveTestResult(
                "fission", None, None, None, None, np.zeros(shape, dtype=bool), 0,
                message=NO_REGION, null=null,
            )  # fmt: skip
        # g(X) = X − Z/τ has covariance (1 + τ⁻²)Σ.
        sd = cov.mean_sd(m, tau**-2 + f)
        stat = float(tested_on.reshape(-1)[m].mean() - ref.reshape(-1)[m].mean())
        z = stat / sd
        p = null_p_value(z, null, self._null_z("fission", null))
        return SelectiveTestResult(
            "fission", p, naive_p_value(z), stat, z, m.reshape(shape), size, null=null
        )

    def _tile(self, image: Any, reference: Any) -> SelectiveTestResult:
        """The tile test (:mod:`diffad.selective.tiles`): every candidate tile tested on the
        event "a pixel of it passes λ", Bonferroni over the grid."""
        self._check_params()
        reference, f = self._reference(reference)
        x, ref, shape = self._check_pair(image, reference)
        tracer, cov, lam = self._tracer(x.shape), self._covariance(x.shape), self._lam()
        selected = tracer.selection_map(x[None])[0] > lam
        tiles = tile_grid(x.shape, int(self.tile_size))
        candidates = [t for t in tiles if (selected & t).any()]
        if not candidates:
            return SelectiveTestResult(
                "tile", None, None, None, None, np.zeros(shape, dtype=bool), 0,
                message=NO_REGION, null="selective",
            )  # fmt: skip
        xf, rf = x.reshape(-1), ref.reshape(-1)
        n = len(tiles)
        tested = []
        for tile in candidates:
            stat, z, a, b = _region_line(xf, rf, tile, cov, f)
            res = SelectiveTestResult(
                "tile", None, naive_p_value(z), stat, z, tile.reshape(shape), int(tile.sum()),
                null="selective",
            )  # fmt: skip
            # Each tile is searched at α / n and precision / n: the Bonferroni p-value's.
            self._selective(res, tracer, a, b, z, TileSelected(tile), "tile",
                            alpha=float(self.alpha) / n,
                            precision=float(self.precision) / n)  # fmt: skip
            tested.append(res)
        # The tile reported: the smallest upper end of the p bracket (the point p when the
        # search ran to the end); the image's bracket bounds the minimum over all tiles.
        upper = [r.p_value_bounds[1] if r.p_value_bounds else r.p_value for r in tested]
        lower = [r.p_value_bounds[0] if r.p_value_bounds else r.p_value for r in tested]
        best = tested[int(np.argmin(upper))]
        best.p_value = min(1.0, n * best.p_value)
        best.p_value_bounds = (min(1.0, n * min(lower)), min(1.0, n * min(upper)))
        best.n_pieces = sum(r.n_pieces for r in tested)
        best.n_network_calls = sum(r.n_network_calls for r in tested)
        return best

    def _selective(
        self, result, tracer, a, b, z, m_obs, method, alpha=None, precision=None
    ) -> None:
        """The exact p-value of ``result`` on the line a + b·z, conditioned on the event
        ``m_obs`` (the observed pixel set, or a coarser event); ``alpha`` and ``precision``
        for the stopping rules (default ``self.alpha``, ``self.precision``)."""
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
            precision=float(self.precision if precision is None else precision),
            alpha=float(self.alpha if alpha is None else alpha),
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
                if m.any():
                    out[i] = (xs[i, m].mean() - ys[i, m].mean()) / cov.mean_sd(m, f)
            return out

        return permutation_p_value(
            line.x, line.ref, z_of_pair, z, int(self.n_permutations), int(self.random_state)
        )

    def test_many(
        self,
        images: Any,
        references: Any = None,
        method: str | None = None,
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
        images : array-like or LocalizationResult
            Images as the localiser reads them, or the result of its ``localize`` (whose
            prepared images are tested as they are: the regions of the maps it holds).
        references : array-like, optional
            One reference per image, a single reference, or ``None`` for ``reference_``.
            Read like the images (prepared by the localiser); with a ``LocalizationResult``,
            (N, C, H, W) or one (C, H, W).
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
            A test that fails stops the batch (pending Ray tasks are cancelled) and its error
            is raised, on every backend. To keep the other results and record errors, use
            :func:`diffad.selective.batch.iter_tests` (as ``diffad test --out`` does).
        """
        from diffad.image.result import LocalizationResult
        from diffad.selective.batch import iter_tests

        if isinstance(images, LocalizationResult):
            data, raw_ndim = images.image, 4
        else:
            data, raw_ndim = self._prepare(images), np.ndim(images)
            if data.ndim not in (3, 4) or len(data) == 0:
                raise ValueError(
                    f"images must be a non-empty (N, H, W) or (N, C, H, W), got {data.shape}"
                )
        refs = None
        if references is not None:
            r = np.asarray(references)
            single = r.ndim == raw_ndim - 1
            refs = self._prepare(r[None] if single else r)
            if single:
                refs = np.broadcast_to(refs, (len(data), *refs.shape[1:]))
            if refs.shape != data.shape:
                raise ValueError(
                    f"references shape {np.shape(references)} does not match the images "
                    f"{np.shape(data)}"
                )
        stream = iter_tests(
            self, list(data), None if refs is None else list(refs), method,
            backend=backend, n_jobs=n_jobs, address=address,
            gpus_per_task=gpus_per_task, max_retries=max_retries,
        )  # fmt: skip
        out: list[Any] = [None] * len(data)
        bar = tqdm(total=len(data), desc=f"{method} p-values", disable=not verbose)
        # closing(): an error or Ctrl-C cancels the pending Ray tasks and stops a Ray started here.
        with contextlib.closing(stream), bar:
            for index, res in stream:
                if isinstance(res, Exception):
                    raise res
                out[index] = res
                bar.update()
        return out
