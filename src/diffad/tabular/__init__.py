"""PyOD-compatible tabular detectors: DTE-NP, DTE-IG, DTE-C and the DDPM baseline.

All share the PyOD contract (``fit``/``decision_function``/``predict``/``predict_proba``,
``decision_scores_``, ``threshold_``, ``labels_``, higher score = more anomalous), standardise
features on the training rows, and save/load as safetensors + JSON. One detector per file:
``dte_np.py``, ``dte_ig.py``, ``dte_c.py``, ``ddpm.py``.
"""

from diffad._lazy import lazy_exports

_EXPORTS = {
    "DTENonParametric": "diffad.tabular.dte_np",
    "DTEInverseGamma": "diffad.tabular.dte_ig",
    "DTECategorical": "diffad.tabular.dte_c",
    "DDPMDetector": "diffad.tabular.ddpm",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
