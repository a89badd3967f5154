"""Deprecated: moved to :mod:`diffad.image.ddpm_localizer`."""

from diffad._deprecation import moved_module

moved_module(__name__, "diffad.image.ddpm_localizer")
