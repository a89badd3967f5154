"""Conformal p-values for any anomaly detector, and Benjamini-Hochberg FDR control."""

from diffad._lazy import lazy_exports

_EXPORTS = {
    "ConformalDetector": "diffad.conformal.conformal_detector",
    "conformal_p_values": "diffad.conformal.p_values",
    "benjamini_hochberg": "diffad.conformal.fdr",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
