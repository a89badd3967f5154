"""diffad.inference: p-values for anomaly scores.

Submodules are imported on use (``from diffad.inference.conformal import ...``) so that
importing the package stays cheap.
"""
