"""Deprecated: moved to :mod:`diffad.selective.affine`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.selective.affine")
