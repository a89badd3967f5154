"""What every image localiser shares: preprocessing, the detector face and calibration.

A localiser reconstructs an image from a model of normal images and maps where the two
differ. :class:`ImageLocalizer` gives every localiser the same interface on top of the
methods a subclass writes: ``_fit_model(data)``, ``_reconstruct(data)`` (or ``_analyse``,
when the map is not a comparison with one reconstruction) and ``region_map_definition()``
(what a region test selects on, :mod:`diffad.image.region_maps`):

- ``fit(images)`` fits the stored :class:`~diffad.image.preprocessing.ImagePreprocessing`
  (when ``preprocessing`` is set) and then the model;
- ``prepare(images)`` applies that preprocessing — every other method calls it;
- ``localize(images)`` computes one reconstruction per image and returns a
  :class:`~diffad.image.result.LocalizationResult` (maps, scores, masks, flags);
  ``anomaly_map``, ``decision_function`` (one score per image: the ``image_score`` reduction
  of its map), ``predict`` (0/1 flag, PyOD convention) and ``predict_masks`` are its parts;
- ``calibrate(healthy_images)`` fixes, from healthy images the model was not trained on,
  the image threshold (95th percentile of their scores) and the pixel thresholds (95th and
  99th percentiles of their map pixels).

A map is a function of the image and the fitted model only: every image is reconstructed
with the same noise draws, so its map and score do not depend on the other images of a
batch, their order or the batch size. With ``decision_function`` a localiser is a detector:
``ConformalDetector`` wraps it unchanged and turns image scores into conformal p-values.
The region test's settings (reference, noise model, λ) belong to
:class:`diffad.selective.SelectiveTest`.
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
from diffad.image.region_maps import RegionMapDefinition
from diffad.image.result import LocalizationResult
from diffad.image.scores import anomaly_score

PIXEL_LEVELS = (95, 99)
#: Written into every checkpoint: how a map's reconstruction noise is drawn. Checkpoints
#: without it come from the rule where image i of a batch used the noise of seed + i.
NOISE_RULE = "one draw for every image"


class ImageLocalizer(BaseEstimator):
    """Base class of the image localisers (see the module docstring).

    Subclasses set the parameters ``preprocessing`` (dict of
    :class:`~diffad.image.preprocessing.ImagePreprocessing` fields, or None: images are used
    as given), ``score`` (map used by ``decision_function`` and ``calibrate``),
    ``image_score`` (``"max"``, ``"mean"`` or ``"p99"`` of the map) and ``random_state``.

    Attributes set by ``fit``: ``preprocessing_``, ``image_shape_``. By ``calibrate``:
    ``calibration_scores_``, ``threshold_``, ``pixel_thresholds_``.
    """

    #: U-Net widths when ``unet`` is None (None: the published DAL-Test 32-64-128-256).
    default_channels: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ subclass API
    def _fit_model(self, data: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reconstruct(self, data: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def region_map_definition(self) -> RegionMapDefinition:  # pragma: no cover - abstract
        """What a region test of this model selects on (:mod:`diffad.image.region_maps`)."""
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
            return np.ascontiguousarray(self.preprocessing_.transform(images))
        data, _ = as_image_batch(images)
        c, h, w = self.image_shape_
        if data.shape[1] != c:
            raise ValueError(f"the model takes {c} channel(s), the images have {data.shape[1]}")
        if tuple(data.shape[2:]) != (h, w):
            raise ValueError(
                f"images are {data.shape[2]}x{data.shape[3]} pixels but the model was trained "
                f"on {h}x{w}"
            )
        return np.ascontiguousarray(data)

    # ------------------------------------------------------------------ detector face
    def _analyse(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reconstructions (N, C, H, W) and ``score`` maps (N, H, W) of prepared images.

        Localisers whose map is not a comparison of X with one reconstruction (DISYRE)
        override this method.
        """
        rec = self._reconstruct(data)
        return rec, anomaly_score(data, rec, self.score)

    def shown_maps(self, data: np.ndarray) -> np.ndarray:
        """The ``score`` maps (N, H, W) that :meth:`localize` shows, of images already
        prepared (model layout and scale, as :meth:`prepare` returns them)."""
        self._check_fitted()
        return self._analyse(np.asarray(data, dtype=np.float32))[1]

    def reduce_maps(self, maps: np.ndarray) -> np.ndarray:
        """Image scores (N,) from maps (N, H, W) by the ``image_score`` reduction."""
        flat = maps.reshape(len(maps), -1).astype(np.float64)
        if self.image_score == "max":
            return flat.max(axis=1)
        if self.image_score == "mean":
            return flat.mean(axis=1)
        return np.percentile(flat, 99, axis=1)

    def localize(self, images: Any) -> LocalizationResult:
        """Maps, scores and, for a calibrated model, masks and flags, from one reconstruction
        of each image.

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W) with the training (C, H, W), or what the stored
            preprocessing reads.

        Returns
        -------
        LocalizationResult
            Every field is a function of its own image and the fitted model.
        """
        data = self.prepare(images)
        rec, maps = self._analyse(data)
        scores = self.reduce_maps(maps)
        masks = labels = None
        if hasattr(self, "threshold_"):
            masks = self.masks_from_maps(maps)
            labels = (scores > self.threshold_).astype(int)
        return LocalizationResult(data, rec, maps, scores, masks, labels)

    def anomaly_map(self, images: Any) -> np.ndarray:
        """Pixel anomaly map (N, H, W), float32, of each image (higher = more anomalous):
        the ``score`` map of :meth:`localize`."""
        return self.localize(images).anomaly_map

    def decision_function(self, images: Any) -> np.ndarray:
        """One anomaly score per image: the ``image_score`` reduction (max, mean or 99th
        percentile over pixels) of its ``score`` map. Higher = more anomalous.

        Returns
        -------
        numpy.ndarray of shape (N,)
        """
        return self.localize(images).pred_score

    def predict(self, images: Any) -> np.ndarray:
        """1 for images whose score exceeds ``threshold_`` (set by ``calibrate``), else 0."""
        self._check_calibrated()
        return self.localize(images).pred_label

    def masks_from_maps(self, maps: np.ndarray, level: int = 99) -> np.ndarray:
        """Binary masks (N, H, W) of maps: pixels above the healthy ``level``-th percentile."""
        self._check_calibrated()
        if level not in self.pixel_thresholds_:
            raise ValueError(f"level must be one of {sorted(self.pixel_thresholds_)}, got {level}")
        return np.asarray(maps) > self.pixel_thresholds_[level]

    def predict_masks(self, images: Any, level: int = 99) -> np.ndarray:
        """Binary masks (N, H, W): pixels above the healthy ``level``-th percentile (95/99)."""
        self._check_calibrated()
        if level not in self.pixel_thresholds_:  # checked before the (costly) maps
            raise ValueError(f"level must be one of {sorted(self.pixel_thresholds_)}, got {level}")
        return self.masks_from_maps(self.anomaly_map(images), level)

    # ------------------------------------------------------------------ calibration
    def _check_calibrated(self) -> None:
        check_is_fitted(self, "threshold_")

    def calibrate(self, healthy_images: Any) -> ImageLocalizer:
        """Image and pixel thresholds from healthy images not used in training.

        Sets ``calibration_scores_`` (the healthy image scores, which conformal p-values and
        ``ConformalDetector`` compare against), ``threshold_`` (their 95th percentile) and
        ``pixel_thresholds_`` (95th and 99th percentiles of their map pixels).

        Parameters
        ----------
        healthy_images : array-like
            Healthy images (at least ``MIN_CALIBRATION_IMAGES``), prepared like every other
            input.

        Returns
        -------
        self
        """
        result = self.localize(healthy_images)
        if len(result) < MIN_CALIBRATION_IMAGES:
            raise ValueError(
                f"need at least {MIN_CALIBRATION_IMAGES} healthy calibration images, "
                f"got {len(result)}"
            )
        maps = result.anomaly_map
        self.calibration_scores_ = np.array(result.pred_score)
        self.threshold_ = float(np.percentile(self.calibration_scores_, 95))
        self.pixel_thresholds_ = {lvl: float(np.percentile(maps, lvl)) for lvl in PIXEL_LEVELS}
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
            }
            tensors["calibration.scores"] = np.asarray(self.calibration_scores_)
        return config, tensors

    def _restore_face_state(self, config: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.preprocessing_ = ImagePreprocessing.from_dict(config.get("preprocessing"))
        cal = config.get("calibration")
        if cal is None:
            return
        self.threshold_ = float(cal["threshold"])
        self.pixel_thresholds_ = {int(k): float(v) for k, v in cal["pixel_thresholds"].items()}
        self.calibration_scores_ = tensors["calibration.scores"].numpy()

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
            "noise_rule": NOISE_RULE,
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
        est.noise_rule_ = config.get("noise_rule")
        est._restore_face_state(config, tensors)
        extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
        return est, extra
