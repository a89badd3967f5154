"""The exact float64 tracer of a localiser's region map (:mod:`diffad.image.region_maps`).

This is the one place where the selective engine meets a localiser: a localiser declares what
its region test selects on (``region_map_definition()``), and :func:`region_tracer` builds the
tracer that replays that map along a line.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from diffad.image.region_maps import (
    ReconstructionRegionMap,
    RegionMapDefinition,
    RestorationRegionMap,
)
from diffad.selective.ensemble_tracer import RestorationEnsembleTracer
from diffad.selective.tracer import ReconstructionTracer


class RegionTestable(Protocol):
    """What the region test needs of a localiser."""

    image_shape_: tuple[int, int, int]

    def prepare(self, images: Any) -> np.ndarray:
        """Images in model layout and scale, (N, C, H, W)."""

    def region_map_definition(self) -> RegionMapDefinition:
        """What the region test selects on."""

    def shown_maps(self, data: np.ndarray) -> np.ndarray:
        """The maps (N, H, W) ``localize`` shows for prepared images (``selection="shown"``)."""


def region_tracer(
    definition: RegionMapDefinition,
    shape: tuple[int, int, int],
    filter_size: int,
    device: torch.device | str,
) -> ReconstructionTracer | RestorationEnsembleTracer:
    """The tracer of ``definition`` for images of ``shape`` (C, H, W).

    Raises
    ------
    TypeError
        For a definition this engine cannot trace.
    """
    if isinstance(definition, ReconstructionRegionMap):
        return ReconstructionTracer(
            definition.model,
            definition.chain,
            definition.noises,
            filter_size=int(filter_size),
            device=device,
        )
    if isinstance(definition, RestorationRegionMap):
        return RestorationEnsembleTracer(
            definition.model,
            definition.chains,
            shape,
            filter_size=int(filter_size),
            foreground=definition.foreground,
            device=device,
        )
    raise TypeError(f"no tracer for a region map of type {type(definition).__name__}")
