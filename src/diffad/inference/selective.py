"""Deprecated: moved to :mod:`diffad.selective.selective_test`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.selective.selective_test")
