"""The result of one localisation call: everything shown and tested comes from it."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True, eq=False)
class LocalizationResult:
    """Maps, scores, masks and flags of a batch, computed from one reconstruction per image.

    Returned by ``ImageLocalizer.localize``. The report, ``diffad localize`` and the region
    test all read this one object, so the map a user looks at is the map that was scored and
    tested. The arrays are read-only.

    Attributes
    ----------
    image : numpy.ndarray
        (N, C, H, W) float32: the inputs after the model's stored preprocessing.
    reconstruction : numpy.ndarray
        (N, C, H, W) float32: D(X) (for DISYRE, the mean of its restorations).
    anomaly_map : numpy.ndarray
        (N, H, W) float32: the model's ``score`` map, higher = more anomalous.
    pred_score : numpy.ndarray
        (N,) float64: the ``image_score`` reduction of each map.
    pred_mask : numpy.ndarray or None
        (N, H, W) bool: pixels above the healthy 99th percentile; None for an uncalibrated
        model.
    pred_label : numpy.ndarray or None
        (N,) int: 1 where the score exceeds the healthy threshold (PyOD convention); None
        for an uncalibrated model.
    """

    image: np.ndarray
    reconstruction: np.ndarray
    anomaly_map: np.ndarray
    pred_score: np.ndarray
    pred_mask: np.ndarray | None = None
    pred_label: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.image)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if len(value) != n:
                raise ValueError(f"{f.name} has {len(value)} entries for {n} images")
            own = np.array(value)  # a copy: never freeze or alias the caller's array
            own.setflags(write=False)
            object.__setattr__(self, f.name, own)

    def __len__(self) -> int:
        return len(self.image)

    @property
    def calibrated(self) -> bool:
        """Whether masks and flags are present (the model was calibrated)."""
        return self.pred_label is not None
