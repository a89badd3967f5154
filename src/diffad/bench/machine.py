"""Machine and software description written next to every benchmark result."""

from __future__ import annotations

import os
import platform
import sys


def machine_info() -> dict:
    """Cores, CPU, Python and library versions, torch threads, CUDA availability."""
    import numpy
    import sklearn
    import torch

    info = {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        import pyod

        info["pyod"] = pyod.__version__
    except ImportError:  # pragma: no cover - pyod is a dependency
        pass
    return info
