"""Deprecated: moved to :mod:`diffad.diffusion.chain`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.diffusion.chain")
