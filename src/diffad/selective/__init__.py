"""Region p-values for the region a diffusion localiser flags.

Start with :class:`SelectiveTest` (``dal.py``): the rank test, the default (the most extreme
flagged component ranked among healthy images: ``rank.py``), the exact DAL-Test, and data
fission against a null calibrated on healthy images (``fission.py``), with the noise model estimated
(``noise.py``) and checked on fixed-region means (``noise_check.py``). The tracer of a
localiser's region map is built in ``region_tracer.py``. The exact engine underneath: the
float64 tracer of the reconstruction along a line (``tracer.py``, layer rules in
``affine.py``, reuse of shared calls in ``prefix_cache.py``; DISYRE's mean of absolute
restoration errors in ``ensemble_tracer.py``), the selection inside one piece
(``intervals.py``), the parametric search and its p-value bracket (``search.py``,
``bracket.py``), the truncated normal (``truncnorm.py``) and the comparators (naive,
Bonferroni, permutation: ``comparators.py``).
"""

from diffad._lazy import lazy_exports

#: p-value methods of :meth:`SelectiveTest.test`.
METHODS = (
    "rank", "fission", "parametric", "tile", "oc", "naive", "bonferroni", "permutation",
)
#: Methods whose statistic is calibrated against healthy images (``null``).
NULL_METHODS = ("fission", "naive")
#: The region test ``diffad test``, ``diffad demo`` and the report use unless told otherwise,
#: and the null of fission: the most powerful valid ones in ``benchmarks/region_power.py``
#: (docs/benchmarks/region_power.md). ``rank`` needs more than 1/α − 1 healthy null images;
#: ``diffad test`` falls back to fission with this null when there are fewer.
DEFAULT_METHOD = "rank"
#: Folder of a localiser checkpoint where ``diffad train-image`` keeps the region test's
#: calibration (``SelectiveTest.save``).
REGION_TEST_FOLDER = "region_test"
DEFAULT_NULL = "scaled"
#: Stopping rules of the parametric search (:mod:`diffad.selective.search`).
TERMINATIONS = ("exhaustive", "precision", "decision")

_EXPORTS = {
    "SelectiveTest": "diffad.selective.dal",
    "SelectiveTestResult": "diffad.selective.result",
    "NoiseCovariance": "diffad.selective.covariance",
    "ReconstructionTracer": "diffad.selective.tracer",
    "RestorationEnsembleTracer": "diffad.selective.ensemble_tracer",
}
__all__ = [*_EXPORTS, "METHODS", "TERMINATIONS", "DEFAULT_METHOD", "DEFAULT_NULL"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
