"""Beta schedules, cumulative products and forward noising (VP and VE forms).

All tables are kept in float64 so that selective inference can trace the reverse process
exactly; tensors handed to networks are cast to the caller's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linearly spaced betas, as in DDPM (Ho et al., 2020).

    Parameters
    ----------
    num_steps : int
        Number of diffusion steps T (>= 1).
    beta_start, beta_end : float
        First and last beta, 0 < beta_start <= beta_end < 1.

    Returns
    -------
    numpy.ndarray
        Shape (T,), float64.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal (2021), betas clipped at ``max_beta``.

    Parameters
    ----------
    num_steps : int
        Number of diffusion steps T (>= 1).
    offset : float
        Small offset s that keeps beta_0 away from zero.
    max_beta : float
        Upper clip that avoids a singular last step.

    Returns
    -------
    numpy.ndarray
        Shape (T,), float64.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, max_beta)


@dataclass(eq=False)
class NoiseSchedule:
    """A discrete diffusion schedule with its cumulative products.

    Parameters
    ----------
    betas : numpy.ndarray
        Per-step noise variances, shape (T,).

    Notes
    -----
    Compared by identity (``eq=False``): ``==`` on arrays has no single truth value.

    Attributes
    ----------
    alphas : numpy.ndarray
        1 - beta_t.
    alpha_bars : numpy.ndarray
        Cumulative product of alphas (written ᾱ_t in the papers).
    """

    betas: np.ndarray
    alphas: np.ndarray = field(init=False)
    alpha_bars: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError("betas must be a non-empty 1-D array")
        if np.any(betas <= 0) or np.any(betas >= 1):
            raise ValueError("every beta must lie in (0, 1)")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = np.cumprod(self.alphas)

    @classmethod
    def linear(
        cls, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> NoiseSchedule:
        """Schedule with linearly spaced betas."""
        return cls(linear_betas(num_steps, beta_start, beta_end))

    @classmethod
    def cosine(cls, num_steps: int) -> NoiseSchedule:
        """Schedule with the cosine betas of Nichol & Dhariwal."""
        return cls(cosine_betas(num_steps))

    @property
    def num_steps(self) -> int:
        """Number of diffusion steps T."""
        return int(self.betas.size)

    def ve_sigmas(self) -> np.ndarray:
        """Noise scale sqrt(1 - ᾱ_t) of the variance-exploding form used by DTE."""
        return np.sqrt(1.0 - self.alpha_bars)

    def _table(self, values: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Gather ``values[t]`` and shape it to broadcast against ``like`` (batch first)."""
        t = torch.as_tensor(t, device=like.device).long()
        if t.min() < 0 or t.max() >= self.num_steps:
            raise ValueError(f"timesteps must lie in [0, {self.num_steps - 1}]")
        table = torch.as_tensor(values, device=like.device, dtype=like.dtype)
        out = table[t]
        return out.reshape(out.shape + (1,) * (like.ndim - out.ndim))

    def add_noise_vp(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Variance-preserving noising x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε (DDPM)."""
        a = self._table(np.sqrt(self.alpha_bars), t, x0)
        s = self._table(np.sqrt(1.0 - self.alpha_bars), t, x0)
        return a * x0 + s * noise

    def add_noise_ve(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Variance-exploding noising x_t = x_0 + sqrt(1 - ᾱ_t) ε (DTE)."""
        return x0 + self._table(self.ve_sigmas(), t, x0) * noise

    def ve_variance(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Noise variance 1 − ᾱ_t of the variance-exploding form at steps ``t``, in the dtype
        and device of ``like`` and shaped to broadcast against it (batch first)."""
        return self._table(1.0 - self.alpha_bars, t, like)
