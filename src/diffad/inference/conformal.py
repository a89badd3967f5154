"""Deprecated: moved to :mod:`diffad.conformal.conformal_detector`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.conformal.conformal_detector")
