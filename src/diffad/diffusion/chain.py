"""The seeded partial-noise reconstruction D(X), written once as data.

D(X) noises an image to step ``t_start`` and walks back with DDIM over descending
``timesteps`` (first = ``t_start``, one network call each; the last call goes to the clean
estimate). :class:`ReconstructionChain` holds that recipe as a list of affine steps with
their constants,

    x ← in_scale·X + in_noise_scale·n₀,   then per step   x ← c_x·x + c_eps·ε̂(x, t) + σ·n_k,

and every consumer runs this one definition: :meth:`ReconstructionChain.run` (the
localisers), the float64 tracer of :mod:`diffad.selective.tracer` (selective p-values) and
the ONNX export of ``benchmarks/onnx_export.py``. The noise tensors n₀, n₁, … come from
:func:`draw_reconstruction_noise` in a fixed order from one seeded generator, so the same
seed gives the same D(X) bit for bit and the tracer can replay it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from diffad.diffusion.ddim import DDIMScheduler, ddim_timesteps
from diffad.diffusion.schedules import NoiseSchedule


@dataclass(frozen=True)
class ChainStep:
    """One DDIM network call: x ← c_x·x + c_eps·ε̂(x, t) + sigma·n.

    Attributes
    ----------
    t : int
        Time step at which the network is called.
    t_prev : int
        Step the update lands on (−1: the clean end of the chain).
    c_x, c_eps, sigma : float
        The DDIM coefficients (:meth:`DDIMScheduler.coefficients`); ``sigma = 0`` adds no
        fresh noise.
    """

    t: int
    t_prev: int
    c_x: float
    c_eps: float
    sigma: float


@dataclass(frozen=True)
class ReconstructionChain:
    """The reconstruction D(X) as constants: forward noising, then DDIM steps.

    Build it with :meth:`ddim`. Two chains with the same fields give the same D(X).

    Attributes
    ----------
    in_scale, in_noise_scale : float
        sqrt(ᾱ) and sqrt(1 − ᾱ) at the first time step: x = in_scale·X + in_noise_scale·n₀.
    steps : tuple of ChainStep
        The network calls, in order.
    """

    in_scale: float
    in_noise_scale: float
    steps: tuple[ChainStep, ...]

    @classmethod
    def ddim(
        cls,
        schedule: NoiseSchedule,
        timesteps: Sequence[int],
        eta: float = 1.0,
    ) -> ReconstructionChain:
        """The DDIM chain over ``timesteps`` (strictly descending, >= 0; see
        :func:`~diffad.diffusion.ddim.ddim_timesteps`) with stochasticity ``eta``."""
        steps = [int(t) for t in timesteps]
        if not steps:
            raise ValueError("timesteps is empty")
        if any(a <= b for a, b in zip(steps[:-1], steps[1:], strict=False)) or steps[-1] < 0:
            raise ValueError(f"timesteps must be strictly descending and >= 0, got {steps}")
        if steps[0] >= schedule.num_steps:
            raise ValueError(f"timesteps must lie below T = {schedule.num_steps}, got {steps[0]}")
        scheduler = DDIMScheduler(schedule, eta=eta)
        calls = []
        for i, t in enumerate(steps):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            c_x, c_eps, sigma, _ = scheduler.coefficients(t, t_prev)
            calls.append(ChainStep(t, t_prev, c_x, c_eps, sigma))
        ab = schedule.alpha_bars[steps[0]]
        return cls(float(np.sqrt(ab)), float(np.sqrt(1 - ab)), tuple(calls))

    @classmethod
    def from_start(
        cls, schedule: NoiseSchedule, t_start: int, n_calls: int, eta: float = 1.0
    ) -> ReconstructionChain:
        """The chain of ``n_calls`` evenly spaced DDIM calls from ``t_start`` down to 0."""
        return cls.ddim(schedule, ddim_timesteps(int(t_start), int(n_calls)), eta)

    @property
    def timesteps(self) -> list[int]:
        """The network-call steps."""
        return [s.t for s in self.steps]

    @property
    def n_noises(self) -> int:
        """Noise tensors one reconstruction consumes: the forward one and one per call."""
        return len(self.steps) + 1

    def draw_noise(
        self,
        shape: Sequence[int],
        seed: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> list[torch.Tensor]:
        """All noise of one reconstruction (see :func:`draw_reconstruction_noise`)."""
        return draw_reconstruction_noise(shape, self.timesteps, seed, device, dtype)

    def run(
        self, model: nn.Module, images: torch.Tensor, noises: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """D(X) for a batch: noise ``images`` and apply every step with ``model(x, t)``.

        Parameters
        ----------
        model : torch.nn.Module
            ε-prediction network in eval mode.
        images : torch.Tensor
            Shape (B, C, H, W).
        noises : sequence of torch.Tensor
            ``n_noises`` tensors broadcastable to ``images`` (from :meth:`draw_noise`).

        Returns
        -------
        torch.Tensor
            The reconstruction, same shape as ``images``.
        """
        if len(noises) != self.n_noises:
            raise ValueError(f"need {self.n_noises} noise tensors, got {len(noises)}")
        x = self.in_scale * images + self.in_noise_scale * noises[0]
        for step, noise in zip(self.steps, noises[1:], strict=True):
            x = step.c_x * x + step.c_eps * model(x, step.t)
            if step.sigma > 0:
                x = x + step.sigma * noise
        return x


def draw_reconstruction_noise(
    shape: Sequence[int],
    timesteps: Sequence[int],
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """All noise of one reconstruction, drawn in a fixed order from one seeded generator.

    Returns ``len(timesteps) + 1`` tensors of ``shape``: the forward noise that takes the image
    to ``timesteps[0]``, then one fresh-noise tensor per DDIM call (used only when that call's
    σ > 0). Drawn in float64 on the CPU and cast, so that the values do not depend on the
    device.
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
    """D(X): ``ReconstructionChain.ddim(schedule, timesteps, eta).run(model, images, noises)``.

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
        From :func:`draw_reconstruction_noise` for these timesteps.
    eta : float
        DDIM stochasticity (1 = ancestral noise, as published).
    """
    return ReconstructionChain.ddim(schedule, timesteps, eta).run(model, images, noises)
