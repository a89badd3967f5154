"""Image anomaly localisation: a DDPM trained on normal images (``ddpm_localizer.py``),
DISYRE v2 restoring synthetic anomalies (``disyre_localizer.py``, ``dag.py``), both on one
interface (``localizer_base.py``; by name and from a checkpoint: ``localizers.py``),
L1 / SSIM / SSIM-ens maps (``scores.py``, ``ssim.py``, ``ssim_ens.py``) and the
post-processing of maps (``postprocess.py``)."""

from diffad._lazy import lazy_exports

#: Anomaly map names accepted by :func:`diffad.image.scores.anomaly_score`.
SCORES: tuple[str, ...] = ("l1", "ssim", "ssim-ens", "ssim-ens-mean")
#: How a localiser turns a map into one image score (max, mean or 99th percentile).
IMAGE_SCORES: tuple[str, ...] = ("max", "mean", "p99")
#: The localisers by method name (``diffad train-image --method``): name → (module, class).
LOCALIZER_CLASSES: dict[str, tuple[str, str]] = {
    "ddpm": ("diffad.image.ddpm_localizer", "DDPMLocalizer"),
    "disyre": ("diffad.image.disyre_localizer", "DisyreLocalizer"),
}
LOCALIZER_METHODS: tuple[str, ...] = tuple(LOCALIZER_CLASSES)
#: How a DISYRE localiser combines its restorations (``DisyreLocalizer(inference=...)``).
INFERENCE_MODES: tuple[str, ...] = ("ensemble", "sampler")
#: Fewest healthy images ``calibrate`` accepts (the localiser's and the region test's).
MIN_CALIBRATION_IMAGES = 4

_EXPORTS = {
    "DDPMLocalizer": "diffad.image.ddpm_localizer",
    "DisyreLocalizer": "diffad.image.disyre_localizer",
    "load_localizer": "diffad.image.localizers",
    "anomaly_score": "diffad.image.scores",
    "ssim_ens_score": "diffad.image.ssim_ens",
}
__all__ = [*_EXPORTS, "SCORES", "IMAGE_SCORES", "LOCALIZER_METHODS", "INFERENCE_MODES"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
