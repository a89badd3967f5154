"""What every image localiser shares: preprocessing, the detector face and calibration.

A localiser reconstructs an image from a model of normal images and maps where the two
differ. :class:`ImageLocalizer` gives every localiser the same interface on top of the
methods a subclass writes: ``_fit_model(data)``, ``_reconstruct(data, seed, n_samples)``
(or ``_analyse``, when the map is not a comparison with one reconstruction) and
``region_tracer`` (the exact tracer of its region-test map, for ``SelectiveTest``):

- ``fit(images)`` fits the stored :class:`~diffad.image.preprocessing.ImagePreprocessing`
  (when ``preprocessing`` is set) and then the model;
- ``prepare(images)`` applies that preprocessing — every other method calls it;
- ``anomaly_map``, ``decision_function`` (one score per image: the ``image_score``
  reduction of its map), ``predict`` (0/1 flag, PyOD convention) and ``predict_masks``;
- ``calibrate(healthy_images)`` fixes, from healthy images the model was not trained on,
  the image threshold (95th percentile of their scores), the pixel thresholds (95th and
  99th percentiles of their map pixels), the noise model and the default λ of the region
  test, and keeps half of them aside for the healthy calibration check.

With ``decision_function`` a localiser is a detector: ``ConformalDetector`` wraps it
unchanged and turns image scores into conformal p-values.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from diffad.checkpoint import load_checkpoint, save_checkpoint
from diffad.device import resolve_device
from diffad.diffusion.training import LR_SCHEDULES, train_network
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image import IMAGE_SCORES, MIN_CALIBRATION_IMAGES, SCORES
from diffad.image.batch import as_image_batch
from diffad.image.preprocessing import ImagePreprocessing
from diffad.image.scores import anomaly_score
from diffad.selective.affine import mean_filter_pair
from diffad.selective.noise import NOISE_KINDS, estimate_noise_model

PIXEL_LEVELS = (95, 99)
#: Reconstruction seed of the first calibration image (far from the test images' 0, 1, ...).
CALIBRATION_SEED = 1_000_000_000


class ImageLocalizer(BaseEstimator):
    """Base class of the image localisers (see the module docstring).

    Subclasses set the parameters ``preprocessing`` (dict of
    :class:`~diffad.image.preprocessing.ImagePreprocessing` fields, or None: images are used
    as given), ``score`` (map used by ``decision_function`` and ``calibrate``),
    ``image_score`` (``"max"``, ``"mean"`` or ``"p99"`` of the map) and ``random_state``.

    Attributes set by ``fit``: ``preprocessing_``, ``image_shape_``. By ``calibrate``:
    ``calibration_scores_``, ``threshold_``, ``pixel_thresholds_``, ``reference_``,
    ``reference_var_factor_``, ``noise_var_``, ``noise_kind_``, ``lam_``, ``check_images_``.
    """

    #: U-Net widths when ``unet`` is None (None: the published DAL-Test 32-64-128-256).
    default_channels: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ subclass API
    def _fit_model(self, data: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reconstruct(
        self, data: np.ndarray, seed: int, n_samples: int
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def region_tracer(
        self,
        shape: tuple[int, int, int],
        seed: int,
        filter_size: int,
        device: torch.device | str,
        **overrides: Any,
    ) -> Any:  # pragma: no cover - abstract
        """The float64 tracer of this localiser's region-test map (see ``SelectiveTest``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ networks
    def _unet_config(self, in_channels: int) -> UNetConfig:
        """The architecture of the ``unet`` parameter, ``in_channels`` filled in from the data."""
        if self.unet is None:
            if self.default_channels is None:
                return UNetConfig(in_channels=in_channels)
            return UNetConfig(in_channels=in_channels, channels=list(self.default_channels))
        if isinstance(self.unet, UNetConfig):
            cfg = dict(asdict(self.unet))
        elif isinstance(self.unet, dict):
            cfg = dict(self.unet)
            cfg.setdefault("in_channels", in_channels)
        else:
            raise ValueError(f"unet must be a UNetConfig, a dict or None, got {type(self.unet)}")
        try:
            config = UNetConfig(**cfg)
        except TypeError as err:
            raise ValueError(f"invalid unet configuration {cfg}: {err}") from err
        if config.in_channels != in_channels:
            raise ValueError(
                f"unet.in_channels={config.in_channels} but the images have "
                f"{in_channels} channel(s)"
            )
        return config

    def _build_unet(self, data: np.ndarray) -> UNet:
        """A freshly initialised U-Net for ``data`` (N, C, H, W), seeded, on ``device``."""
        if len(data) < 2:
            # BatchNorm needs more than one value per channel in training mode.
            raise ValueError(f"need at least 2 training images, got {len(data)}")
        config = self._unet_config(data.shape[1])
        with torch.random.fork_rng(devices=[]):
            # Weight initialisation uses the global generator; fork it so that fitting is
            # seeded without changing the caller's random state.
            torch.manual_seed(int(self.random_state))
            model = UNet(config)
        model.check_input(torch.from_numpy(data[:1]))
        return model.to(resolve_device(self.device))

    def _check_training_params(self) -> None:
        """The training budget and optimiser parameters every U-Net localiser has."""
        if int(self.train_steps) < 1 or int(self.batch_size) < 1:
            raise ValueError("train_steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    def _train_unet(self, model: UNet, data: np.ndarray, loss_fn: Any, desc: str) -> None:
        """Train ``model`` on ``data`` with the shared loop (seeded by ``random_state``) and
        keep it as ``model_`` with ``loss_history_`` and ``train_seconds_``."""
        device = next(model.parameters()).device
        log = train_network(
            model,
            torch.from_numpy(data).to(device),
            loss_fn,
            n_steps=int(self.train_steps),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            lr_schedule=self.lr_schedule,
            drop_last=True,  # BatchNorm needs more than one image per batch
            generator=torch.Generator().manual_seed(int(self.random_state)),
            verbose=self.verbose,
            desc=desc,
        )
        self.train_seconds_ = log.seconds
        self.model_ = model
        self.loss_history_ = log.losses

    # ------------------------------------------------------------------ fitting
    def fit(self, images: Any, y: Any = None) -> ImageLocalizer:
        """Fit the preprocessing (when set) and the model on normal images.

        Parameters
        ----------
        images : array-like or list of arrays
            Normal images: (N, H, W) or (N, C, H, W) arrays, or a list of (H, W) / (H, W, 3)
            pictures when ``preprocessing`` is set.
        y : ignored

        Returns
        -------
        self
        """
        self._check_face_params()
        if self.preprocessing is None:
            self.preprocessing_ = None
            data, _ = as_image_batch(images, "training images")
        else:
            self.preprocessing_ = ImagePreprocessing(**dict(self.preprocessing)).fit(images)
            data = self.preprocessing_.transform(images)
        self._fit_model(data)
        self.image_shape_ = tuple(int(v) for v in data.shape[1:])
        return self

    def _check_face_params(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score must be one of {IMAGE_SCORES}, got {self.image_score!r}")
        if self.preprocessing is not None and not isinstance(self.preprocessing, dict):
            raise ValueError("preprocessing must be a dict of ImagePreprocessing fields or None")

    def _check_fitted(self) -> None:
        check_is_fitted(self, "image_shape_")

    def prepare(self, images: Any) -> np.ndarray:
        """Images in model layout and scale (N, C, H, W), float32, by the stored preprocessing.

        Raises
        ------
        ValueError
            Empty input, NaN/inf, or images whose channels or size do not match the model.
        """
        self._check_fitted()
        if getattr(self, "preprocessing_", None) is not None:
            return self.preprocessing_.transform(images)
        data, _ = as_image_batch(images)
        c, h, w = self.image_shape_
        if data.shape[1] != c:
            raise ValueError(f"the model takes {c} channel(s), the images have {data.shape[1]}")
        if tuple(data.shape[2:]) != (h, w):
            raise ValueError(
                f"images are {data.shape[2]}x{data.shape[3]} pixels but the model was trained "
                f"on {h}x{w}"
            )
        return data

    # ------------------------------------------------------------------ detector face
    def _analyse(
        self, data: np.ndarray, seed: int, n_samples: int, filter_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Reconstructions (N, C, H, W), ``score`` maps (N, H, W) and, when ``filter_size``
        is given, the region-test map (N, C, H, W) that λ thresholds: |K ∗ (D(X) − X)|.

        Localisers whose map is not a comparison of X with one reconstruction (DISYRE)
        override this method.
        """
        rec = self._reconstruct(data, seed, n_samples)
        maps = anomaly_score(data, rec, self.score)
        if filter_size is None:
            return rec, maps, None
        diff = torch.from_numpy(np.asarray(rec - data, dtype=np.float64))
        return rec, maps, mean_filter_pair(diff, int(filter_size)).abs().numpy()

    def _maps(self, data: np.ndarray, seed: int = 0, n_samples: int = 1) -> np.ndarray:
        return self._analyse(data, seed, n_samples)[1]

    def reduce_maps(self, maps: np.ndarray) -> np.ndarray:
        """Image scores (N,) from maps (N, H, W) by the ``image_score`` reduction."""
        flat = maps.reshape(len(maps), -1).astype(np.float64)
        if self.image_score == "max":
            return flat.max(axis=1)
        if self.image_score == "mean":
            return flat.mean(axis=1)
        return np.percentile(flat, 99, axis=1)

    def decision_function(self, images: Any, seed: int = 0, n_samples: int = 1) -> np.ndarray:
        """One anomaly score per image: the ``image_score`` reduction (max, mean or 99th
        percentile over pixels) of its ``score`` map. Higher = more anomalous.

        Returns
        -------
        numpy.ndarray of shape (N,)
        """
        return self.reduce_maps(self._maps(self.prepare(images), seed, n_samples))

    def score_and_map(
        self, images: Any, seed: int = 0, n_samples: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Prepared images, reconstructions, ``score`` maps and image scores in one pass."""
        data = self.prepare(images)
        rec, maps, _ = self._analyse(data, seed, n_samples)
        return data, rec, maps, self.reduce_maps(maps)

    def predict(self, images: Any, seed: int = 0) -> np.ndarray:
        """1 for images whose score exceeds ``threshold_`` (set by ``calibrate``), else 0."""
        self._check_calibrated()
        return (self.decision_function(images, seed) > self.threshold_).astype(int)

    def masks_from_maps(self, maps: np.ndarray, level: int = 99) -> np.ndarray:
        """Binary masks (N, H, W) of maps: pixels above the healthy ``level``-th percentile."""
        self._check_calibrated()
        if level not in self.pixel_thresholds_:
            raise ValueError(f"level must be one of {sorted(self.pixel_thresholds_)}, got {level}")
        return np.asarray(maps) > self.pixel_thresholds_[level]

    def predict_masks(self, images: Any, level: int = 99, seed: int = 0) -> np.ndarray:
        """Binary masks (N, H, W): pixels above the healthy ``level``-th percentile (95/99)."""
        self._check_calibrated()
        if level not in self.pixel_thresholds_:  # checked before the (costly) maps
            raise ValueError(f"level must be one of {sorted(self.pixel_thresholds_)}, got {level}")
        return self.masks_from_maps(self._maps(self.prepare(images), seed), level)

    # ------------------------------------------------------------------ calibration
    def _check_calibrated(self) -> None:
        check_is_fitted(self, "threshold_")

    def calibrate(
        self,
        healthy_images: Any,
        check_fraction: float = 0.5,
        noise_kind: str = "auto",
        lam_percentile: float = 99.0,
        seed: int = CALIBRATION_SEED,
        filter_size: int = 3,
    ) -> ImageLocalizer:
        """Thresholds, noise model and default λ from healthy images not used in training.

        Parameters
        ----------
        healthy_images : array-like
            Healthy images (at least 4), prepared like every other input.
        check_fraction : float
            Share kept aside (``check_images_``) for the healthy calibration check of the
            region test; the rest estimates the reference, the noise covariance and λ.
        noise_kind : {"auto", "local", "full", "pixel", "scalar"}
            Form of the noise covariance (:func:`diffad.selective.noise.estimate_noise_model`).
        lam_percentile : float
            λ = this percentile of the region-test map (|K ∗ (D(X) − X)| for a DDPM) over
            the estimation images' pixels, so that about 1 % of a healthy image's pixels
            are selected.
        seed : int
            Reconstruction seed of the first image (image i uses seed + i). The default is far
            from the seeds test images use (0, 1, ...), so that no test image shares its
            reconstruction noise with a calibration image and their scores stay exchangeable.
        filter_size : int
            Side of the mean filter K of the region test (its ``filter_size``).

        Returns
        -------
        self
        """
        data = self.prepare(healthy_images)
        if len(data) < MIN_CALIBRATION_IMAGES:
            raise ValueError(
                f"need at least {MIN_CALIBRATION_IMAGES} healthy calibration images, "
                f"got {len(data)}"
            )
        if not 0 < check_fraction < 1:
            raise ValueError(f"check_fraction must be in (0, 1), got {check_fraction}")
        if noise_kind not in NOISE_KINDS:
            raise ValueError(f"noise_kind must be one of {NOISE_KINDS}, got {noise_kind!r}")
        if not 50 <= lam_percentile < 100:
            raise ValueError(f"lam_percentile must be in [50, 100), got {lam_percentile}")
        _, maps, region_maps = self._analyse(data, seed, 1, int(filter_size))
        self.calibration_scores_ = self.reduce_maps(maps)
        self.threshold_ = float(np.percentile(self.calibration_scores_, 95))
        self.pixel_thresholds_ = {lvl: float(np.percentile(maps, lvl)) for lvl in PIXEL_LEVELS}
        perm = np.random.default_rng(int(self.random_state)).permutation(len(data))
        n_check = min(max(1, int(round(check_fraction * len(data)))), len(data) - 2)
        # The check images stay in random order: any first k of them are a random sample.
        check, est = perm[:n_check], np.sort(perm[n_check:])
        model = estimate_noise_model(data[est], noise_kind)
        self.reference_ = model.reference.astype(np.float64)
        self.reference_var_factor_ = model.reference_var_factor
        self.noise_var_ = model.noise_var
        self.noise_kind_ = model.kind
        self.lam_ = float(np.percentile(region_maps[est], lam_percentile))
        self.check_images_ = data[check]
        return self

    # ------------------------------------------------------------------ persistence helpers
    def _face_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Config entries and arrays of the preprocessing and the calibration, for save()."""
        config: dict[str, Any] = {
            "preprocessing": None
            if getattr(self, "preprocessing_", None) is None
            else self.preprocessing_.to_dict()
        }
        tensors: dict[str, np.ndarray] = {}
        if hasattr(self, "threshold_"):
            config["calibration"] = {
                "threshold": self.threshold_,
                "pixel_thresholds": {str(k): v for k, v in self.pixel_thresholds_.items()},
                "reference_var_factor": self.reference_var_factor_,
                "noise_kind": self.noise_kind_,
                "lam": self.lam_,
            }
            tensors["calibration.scores"] = np.asarray(self.calibration_scores_)
            tensors["calibration.reference"] = np.asarray(self.reference_)
            tensors["calibration.noise_var"] = np.asarray(self.noise_var_, dtype=np.float64)
            tensors["calibration.check_images"] = np.asarray(self.check_images_)
        return config, tensors

    def _restore_face_state(self, config: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.preprocessing_ = ImagePreprocessing.from_dict(config.get("preprocessing"))
        cal = config.get("calibration")
        if cal is None:
            return
        self.threshold_ = float(cal["threshold"])
        self.pixel_thresholds_ = {int(k): float(v) for k, v in cal["pixel_thresholds"].items()}
        self.reference_var_factor_ = float(cal["reference_var_factor"])
        self.noise_kind_ = str(cal["noise_kind"])
        self.lam_ = float(cal["lam"])
        self.calibration_scores_ = tensors["calibration.scores"].numpy()
        self.reference_ = tensors["calibration.reference"].numpy()
        noise_var = tensors["calibration.noise_var"].numpy()
        self.noise_var_ = float(noise_var) if noise_var.ndim == 0 else noise_var
        self.check_images_ = tensors["calibration.check_images"].numpy()

    def _save_checkpoint(
        self, path: str | Path, kind: str, extra: dict[str, np.ndarray] | None = None
    ) -> Path:
        """Write parameters, network weights, loss history, the face state and the
        subclass's ``extra`` arrays as ``kind``."""
        self._check_fitted()
        params = self.get_params(deep=False)
        params["unet"] = self.model_.config.to_dict()
        face_config, face_tensors = self._face_state()
        config = {
            "params": params,
            "image_shape": list(self.image_shape_),
            "train_seconds": float(getattr(self, "train_seconds_", float("nan"))),
            **face_config,
        }
        tensors = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        tensors["loss_history"] = np.asarray(self.loss_history_, dtype=np.float64)
        tensors.update(face_tensors)
        tensors.update({f"extra.{k}": np.asarray(v) for k, v in (extra or {}).items()})
        return save_checkpoint(path, kind, config, tensors)

    @classmethod
    def _load_checkpoint(
        cls,
        path: str | Path,
        kind: str,
        device: str | None = None,
        renamed: dict[str, str] | None = None,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """A localiser from a checkpoint of ``kind`` written by :meth:`_save_checkpoint`,
        and the ``extra`` arrays stored with it.

        ``renamed`` maps parameter names of older checkpoints to their current names.
        """
        config, tensors = load_checkpoint(path, kind)
        try:
            params = dict(config["params"])
            for old, new in (renamed or {}).items():
                if old in params:
                    params[new] = params.pop(old)
            if device is not None:
                params["device"] = device
            est = cls(**params)
            unet_config = UNetConfig(**params["unet"])
            image_shape = tuple(int(v) for v in config["image_shape"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"checkpoint {path} has an invalid config: {err}") from err
        model = UNet(unet_config)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"checkpoint {path} does not match its architecture: {err}") from err
        est.model_ = model.to(resolve_device(est.device)).eval()
        est.image_shape_ = image_shape
        est.loss_history_ = tensors["loss_history"].numpy() if "loss_history" in tensors else None
        est.train_seconds_ = float(config.get("train_seconds", float("nan")))
        est._restore_face_state(config, tensors)
        extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
        return est, extra
