"""Diffusion core: schedules, forward noising and reverse steps (no networks here)."""

from diffad.diffusion.ddim import DDIMScheduler
from diffad.diffusion.ddpm import DDPMScheduler
from diffad.diffusion.schedules import NoiseSchedule, cosine_betas, linear_betas

__all__ = ["DDIMScheduler", "DDPMScheduler", "NoiseSchedule", "cosine_betas", "linear_betas"]
