"""Seeded partial-noise reconstruction D(X) with DDIM, shared by localisation and inference.

The reconstruction noises the image to step ``t_start`` and walks back with DDIM over
``timesteps`` (descending, first = ``t_start``, one network call each; the last call goes to
the clean estimate). Every random draw comes from :func:`draw_reconstruction_noise` in a
fixed order, so the same seed gives the same D(X) bit for bit, and selective inference can
replay the exact same constants while tracing D along a line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from diffad.diffusion.ddim import DDIMScheduler
from diffad.diffusion.schedules import NoiseSchedule


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """Evenly spaced descending steps from ``t_start`` to 0: (460, 5) → [460, 345, 230, 115, 0].

    Parameters
    ----------
    t_start : int
        The noise level the image is pushed to (>= 0).
    steps : int
        Number of network calls (>= 1).
    """
    if t_start < 0 or steps < 1:
        raise ValueError(f"need t_start >= 0 and steps >= 1, got {t_start}, {steps}")
    if steps == 1:
        return [int(t_start)]
    grid = np.linspace(t_start, 0, steps)
    out = [int(round(v)) for v in grid]
    if len(set(out)) != len(out):
        raise ValueError(f"{steps} steps do not fit between {t_start} and 0")
    return out


def draw_reconstruction_noise(
    shape: Sequence[int],
    timesteps: Sequence[int],
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """All noise of one reconstruction, drawn in a fixed order from one seeded generator.

    Returns ``len(timesteps) + 1`` tensors of ``shape``: the forward noise that takes the image
    to ``timesteps[0]``, then one fresh-noise tensor per DDIM transition (used only when that
    transition's σ > 0). Drawn in float64 on the CPU and cast, so that the values do not
    depend on the device.
    """
    gen = torch.Generator().manual_seed(int(seed))
    draws = [
        torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
        for _ in range(len(timesteps) + 1)
    ]
    return [d.to(device=device, dtype=dtype) for d in draws]


def reconstruct(
    model: nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    timesteps: Sequence[int],
    noises: Sequence[torch.Tensor],
    eta: float = 1.0,
) -> torch.Tensor:
    """D(X): noise ``images`` to ``timesteps[0]`` and denoise with DDIM.

    Parameters
    ----------
    model : torch.nn.Module
        ε-prediction network called as ``model(x, t)``; put it in eval mode first.
    schedule : NoiseSchedule
        The schedule the model was trained with.
    images : torch.Tensor
        Shape (B, C, H, W).
    timesteps : sequence of int
        Strictly descending network-call steps (see :func:`ddim_timesteps`).
    noises : sequence of torch.Tensor
        From :func:`draw_reconstruction_noise` for these timesteps; each broadcastable to
        ``images``.
    eta : float
        DDIM stochasticity (1 = ancestral noise, as published).

    Returns
    -------
    torch.Tensor
        The reconstruction, same shape as ``images``.
    """
    steps = [int(t) for t in timesteps]
    if any(a <= b for a, b in zip(steps[:-1], steps[1:], strict=False)) or steps[-1] < 0:
        raise ValueError(f"timesteps must be strictly descending and >= 0, got {steps}")
    if len(noises) != len(steps) + 1:
        raise ValueError(f"need {len(steps) + 1} noise tensors, got {len(noises)}")
    ddim = DDIMScheduler(schedule, eta=eta)
    ab = schedule.alpha_bars[steps[0]]
    x = float(np.sqrt(ab)) * images + float(np.sqrt(1 - ab)) * noises[0]
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        eps = model(x, t)
        x = ddim.step(eps, t, t_prev, x, noise=noises[i + 1])
    return x
