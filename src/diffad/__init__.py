"""diffad: diffusion-model anomaly detection with p-values.

The public classes are importable from here and are loaded on first use, so that
``import diffad`` does not import torch::

    from diffad import DTECategorical, ConformalDetector, DDPMLocalizer, SelectiveTest

Sub-packages
------------
diffusion
    The diffusion core: schedules, VP/VE noising, DDPM/DDIM steps, the reconstruction chain,
    the time embedding, the training loop and the piecewise-linear U-Net.
tabular
    DTE (DTE-NP, DTE-IG, DTE-C) and the tabular DDPM baseline, PyOD-compatible.
image
    Anomaly localisation on one interface: DDPM + SSIM-ens (reconstruction, L1/SSIM/SSIM-ens
    maps) and DISYRE v2 (restoring synthetic anomalies).
selective
    DAL-Test: exact selective p-values for the region a localiser flags.
conformal
    Conformal p-values for any detector and Benjamini-Hochberg FDR control.
data, metrics, bench
    Loaders, metrics and the benchmark harnesses behind ``diffad bench``.
"""

from diffad._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "DTENonParametric": "diffad.tabular.dte_np",
    "DTEInverseGamma": "diffad.tabular.dte_ig",
    "DTECategorical": "diffad.tabular.dte_c",
    "DDPMDetector": "diffad.tabular.ddpm",
    "DDPMLocalizer": "diffad.image.ddpm_localizer",
    "DisyreLocalizer": "diffad.image.disyre_localizer",
    "SelectiveTest": "diffad.selective.dal",
    "ConformalDetector": "diffad.conformal.conformal_detector",
    "conformal_p_values": "diffad.conformal.p_values",
    "benjamini_hochberg": "diffad.conformal.fdr",
}
__all__ = [*_EXPORTS, "__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
