"""Ancestral DDPM reverse step for an ε-predicting network."""

from __future__ import annotations

import numpy as np
import torch

from diffad.diffusion.schedules import NoiseSchedule


class DDPMScheduler:
    """Reverse step p(x_{t-1} | x_t) of Ho et al. (2020) with σ_t² = β_t.

    Parameters
    ----------
    schedule : NoiseSchedule
        The forward schedule the network was trained with.
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    def mean(self, eps: torch.Tensor, t: int, x_t: torch.Tensor) -> torch.Tensor:
        """Mean of p(x_{t-1} | x_t): (x_t − β_t/sqrt(1 − ᾱ_t)·ε̂) / sqrt(α_t).

        Parameters
        ----------
        eps : torch.Tensor
            The network's noise prediction at (x_t, t).
        t : int
            Current step, 0 <= t < T.
        x_t : torch.Tensor
            Current sample.
        """
        s = self.schedule
        if not 0 <= t < s.num_steps:
            raise ValueError(f"t must lie in [0, {s.num_steps - 1}], got {t}")
        beta, alpha, alpha_bar = s.betas[t], s.alphas[t], s.alpha_bars[t]
        return (x_t - beta / np.sqrt(1.0 - alpha_bar) * eps) / np.sqrt(alpha)

    def step(
        self,
        eps: torch.Tensor,
        t: int,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One ancestral step from ``x_t`` to ``x_{t-1}``: the :meth:`mean` plus sqrt(β_t)·z.

        Parameters
        ----------
        eps : torch.Tensor
            The network's noise prediction at (x_t, t).
        t : int
            Current step, 0 <= t < T. At t = 0 no noise is added.
        x_t : torch.Tensor
            Current sample.
        generator : torch.Generator, optional
            Source of the fresh noise, so that a reconstruction can be repeated exactly.

        Returns
        -------
        torch.Tensor
            The sample at step t - 1.
        """
        mean = self.mean(eps, t, x_t)
        if t == 0:
            return mean
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return mean + np.sqrt(self.schedule.betas[t]) * noise
