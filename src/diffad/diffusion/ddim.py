"""DDIM (Song et al., 2021): time-step spacing and the reverse step with stochasticity η."""

from __future__ import annotations

import numpy as np
import torch

from diffad.diffusion.schedules import NoiseSchedule


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """Evenly spaced descending steps from ``t_start`` to 0: (460, 5) → [460, 345, 230, 115, 0].

    Parameters
    ----------
    t_start : int
        The noise level the chain starts from (>= 0).
    steps : int
        Number of network calls (>= 1).

    Raises
    ------
    ValueError
        If ``steps`` distinct integer steps do not fit between ``t_start`` and 0.
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


class DDIMScheduler:
    """Generalised DDIM update between two arbitrary steps of a schedule.

    Parameters
    ----------
    schedule : NoiseSchedule
        The forward schedule the network was trained with.
    eta : float
        0 gives deterministic DDIM, 1 gives DDPM-like ancestral noise.
    """

    def __init__(self, schedule: NoiseSchedule, eta: float = 1.0) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.schedule = schedule
        self.eta = eta

    def coefficients(self, t: int, t_prev: int) -> tuple[float, float, float, float]:
        """Scalars (c_x, c_eps, sigma) of x_prev = c_x x_t + c_eps ε̂ + sigma z.

        Returned as ``(c_x, c_eps, sigma, alpha_bar_prev)``. Written out as scalars so that the
        update is visibly affine in (x_t, ε̂, z), which selective inference relies on.
        ``t_prev = -1`` means the clean end of the chain (ᾱ = 1).
        """
        s = self.schedule
        if not 0 <= t < s.num_steps or not -1 <= t_prev < t:
            raise ValueError(f"need -1 <= t_prev < t < {s.num_steps}, got t={t}, t_prev={t_prev}")
        ab_t = s.alpha_bars[t]
        ab_prev = s.alpha_bars[t_prev] if t_prev >= 0 else 1.0
        sigma = self.eta * np.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
        # x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)
        # x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma z
        c_x = np.sqrt(ab_prev / ab_t)
        dir_coef = np.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
        c_eps = dir_coef - np.sqrt(ab_prev) * np.sqrt(1 - ab_t) / np.sqrt(ab_t)
        return float(c_x), float(c_eps), float(sigma), float(ab_prev)

    def step(
        self,
        eps: torch.Tensor,
        t: int,
        t_prev: int,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One DDIM step from ``x_t`` at step ``t`` to step ``t_prev``.

        Parameters
        ----------
        eps : torch.Tensor
            Network noise prediction at (x_t, t).
        t, t_prev : int
            Current and target steps; ``t_prev = -1`` returns the clean estimate.
        x_t : torch.Tensor
            Current sample.
        generator : torch.Generator, optional
            Source of the fresh noise (ignored when ``noise`` is given).
        noise : torch.Tensor, optional
            Explicit noise z, for exact replay.

        Returns
        -------
        torch.Tensor
            Sample at ``t_prev``.
        """
        c_x, c_eps, sigma, _ = self.coefficients(t, t_prev)
        out = c_x * x_t + c_eps * eps
        if sigma > 0:
            if noise is None:
                noise = torch.randn(
                    x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype
                )
            out = out + sigma * noise
        return out
