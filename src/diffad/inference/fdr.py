"""Deprecated: moved to :mod:`diffad.conformal.fdr`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.conformal.fdr")
