"""The diffusion core shared by every method: β schedules and VP/VE noising
(``schedules.py``), DDPM and DDIM steps and DDIM time-step spacing (``ddpm.py``,
``ddim.py``), the seeded partial-noise reconstruction chain (``chain.py``), the time-step
embedding (``embedding.py``), the training loop (``training.py``) and the piecewise-linear
U-Net (``unet.py``)."""

from diffad._lazy import lazy_exports

_EXPORTS = {
    "NoiseSchedule": "diffad.diffusion.schedules",
    "linear_betas": "diffad.diffusion.schedules",
    "cosine_betas": "diffad.diffusion.schedules",
    "DDPMScheduler": "diffad.diffusion.ddpm",
    "DDIMScheduler": "diffad.diffusion.ddim",
    "ddim_timesteps": "diffad.diffusion.ddim",
    "ReconstructionChain": "diffad.diffusion.chain",
    "timestep_embedding": "diffad.diffusion.embedding",
    "train_network": "diffad.diffusion.training",
    "UNet": "diffad.diffusion.unet",
    "UNetConfig": "diffad.diffusion.unet",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
