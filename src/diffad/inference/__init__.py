"""Deprecated package: DAL-Test moved to :mod:`diffad.selective`, conformal p-values and
Benjamini-Hochberg to :mod:`diffad.conformal`. The old module paths still import, with a
``DeprecationWarning``."""
