"""Cold diffusion with synthetic anomalies (DISYRE): severity steps and restoration chains.

DISYRE corrupts an image x with a synthetic anomaly of severity α ∈ [0, 1] and names the
corruption by the step t of a T = 100 schedule (β linear 1e-3 → 0.2) whose sqrt(ᾱ_t) is
closest to α (:func:`severity_step`). A restorer R(x, t) predicts the clean image from the
corrupted one; diffad's restorer is residual, R(x, t) = x + f(x, t) with f a U-Net, so one
restoration is the one-call :class:`~diffad.diffusion.chain.ReconstructionChain` with
c_x = 1, c_eps = 1 and no noise (:func:`restoration_chain`) and the selective tracer replays
it like any other chain.

The multi-step cold-diffusion sampler (:func:`cold_sampler_chain`) restores at the most
severe step first and moves the image towards the restoration, step by step, to milder
severities: with x̂₀ = R(x_s, s) the estimated anomaly is x_s − x̂₀ at severity α_s, so the
image at the next severity α_s′ is x̂₀ + (α_s′ / α_s)(x_s − x̂₀) = x_s + (1 − α_s′/α_s)·f(x_s, s);
the last call returns x̂₀ itself. Every step is affine in x_s and f, hence again a chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffad.diffusion.chain import ChainStep, ReconstructionChain
from diffad.diffusion.schedules import NoiseSchedule

#: The published DISYRE schedule: T = 100 steps, β linear from 1e-3 to 0.2.
SEVERITY_STEPS = 100
SEVERITY_BETAS = (1e-3, 0.2)
#: The published ensemble of severity steps (one restorer pass each).
DEFAULT_SEVERITIES = (99, 74, 49, 24)


def severity_schedule(
    num_steps: int = SEVERITY_STEPS,
    beta_start: float = SEVERITY_BETAS[0],
    beta_end: float = SEVERITY_BETAS[1],
) -> NoiseSchedule:
    """The linear schedule whose sqrt(ᾱ_t) indexes anomaly severities."""
    return NoiseSchedule.linear(num_steps, beta_start, beta_end)


def severity_levels(schedule: NoiseSchedule) -> np.ndarray:
    """sqrt(ᾱ_t) for t = 0..T−1: the severity α each step stands for (float64)."""
    return np.sqrt(np.asarray(schedule.alpha_bars, dtype=np.float64))


def severity_step(schedule: NoiseSchedule, severity: float | np.ndarray) -> np.ndarray:
    """t = argmin_t |sqrt(ᾱ_t) − α| for each severity α (int64 array of the input's shape)."""
    alpha = np.asarray(severity, dtype=np.float64)
    if np.any(~np.isfinite(alpha)) or np.any((alpha < 0) | (alpha > 1)):
        raise ValueError("severities must lie in [0, 1]")
    levels = severity_levels(schedule)
    return np.abs(levels[None, :] - alpha.reshape(-1, 1)).argmin(axis=1).reshape(alpha.shape)


def _check_steps(steps: Sequence[int], num_steps: int) -> list[int]:
    out = [int(t) for t in steps]
    if not out:
        raise ValueError("severities is empty")
    if any(not 0 <= t < num_steps for t in out):
        raise ValueError(f"severity steps must lie in [0, {num_steps - 1}], got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"severity steps must be distinct, got {out}")
    return out


def restoration_chain(t: int) -> ReconstructionChain:
    """One residual restorer call at severity step ``t``: x ← x + f(x, t)."""
    return ReconstructionChain(1.0, 0.0, (ChainStep(int(t), -1, 1.0, 1.0, 0.0),))


def ensemble_chains(severities: Sequence[int], num_steps: int) -> list[ReconstructionChain]:
    """One :func:`restoration_chain` per severity step (the DISYRE v2 ensemble)."""
    return [restoration_chain(t) for t in _check_steps(severities, num_steps)]


def cold_sampler_chain(schedule: NoiseSchedule, severities: Sequence[int]) -> ReconstructionChain:
    """The multi-step cold-diffusion restoration from the most to the least severe step.

    Parameters
    ----------
    schedule : NoiseSchedule
        The severity schedule (:func:`severity_schedule`).
    severities : sequence of int
        Steps to visit; they are ordered by decreasing severity sqrt(ᾱ_t) (increasing t).
    """
    steps = sorted(_check_steps(severities, schedule.num_steps))
    levels = severity_levels(schedule)
    calls = []
    for i, t in enumerate(steps):
        if i + 1 < len(steps):
            nxt = steps[i + 1]
            calls.append(ChainStep(t, nxt, 1.0, float(1.0 - levels[nxt] / levels[t]), 0.0))
        else:
            calls.append(ChainStep(t, -1, 1.0, 1.0, 0.0))
    return ReconstructionChain(1.0, 0.0, tuple(calls))
