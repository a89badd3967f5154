"""PyOD-compatible tabular detectors: DTE-NP, DTE-IG, DTE-C and the DDPM baseline.

All share the PyOD contract (``fit``/``decision_function``/``predict``/``predict_proba``,
``decision_scores_``, ``threshold_``, ``labels_``, higher score = more anomalous), standardise
features on the training rows, and save/load as safetensors + JSON.
"""

from diffad.tabular.ddpm import DDPMDetector
from diffad.tabular.dte_c import DTECategorical
from diffad.tabular.dte_ig import DTEInverseGamma
from diffad.tabular.dte_np import DTENonParametric

__all__ = ["DDPMDetector", "DTECategorical", "DTEInverseGamma", "DTENonParametric"]
