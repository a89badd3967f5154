"""Deprecated: moved to :mod:`diffad.selective.search`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.selective.search")
