"""DDPMLocalizer: a DDPM trained on normal images that maps where a test image differs.

Training is plain ε-prediction (Ho et al., 2020) with uniform time steps. Localisation noises
a test image to ``t_start`` and denoises it with a short DDIM chain
(:class:`diffad.diffusion.chain.ReconstructionChain`), then compares the image with its
reconstruction D(X) (:mod:`diffad.image.scores`). Every image uses the same noise draws, those
of ``seed``: D is a fixed function, so an image's map never depends on the rest of its batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from diffad.diffusion.chain import ReconstructionChain
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image.batch import map_in_blocks
from diffad.image.localizer_base import NOISE_RULE, ImageLocalizer
from diffad.image.region_maps import ReconstructionRegionMap

_KIND = "DDPMLocalizer"
#: Parameter names of older checkpoints → current names (applied when loading).
CHECKPOINT_RENAMES = {"n_steps": "ddim_steps"}
#: Seed offset between the reconstructions averaged by ``n_samples`` (sample j: seed + j·stride).
SAMPLE_SEED_STRIDE = 1_000_003


class DDPMLocalizer(ImageLocalizer):
    """Unsupervised anomaly localisation with a DDPM trained on normal images.

    Parameters
    ----------
    unet : UNetConfig, dict or None
        Network architecture. ``None`` is the published DAL-Test network (channels
        32-64-128-256); ``in_channels`` is taken from the training images when not given.
    num_train_steps : int
        Diffusion steps T of the training schedule.
    beta_start, beta_end : float
        Linear β schedule (1e-4 → 0.02, as in DDPM).
    t_start : int
        Noise level a test image is pushed to before denoising. Lower keeps more of the image
        (fewer false positives, smaller lesions missed); the DAL-Test publication uses 460.
        The default 250 is the level the SSIM-ens study used for brain MRI.
    ddim_steps : int
        DDIM network calls from ``t_start`` down to 0 (5, as published for DAL-Test).
    eta : float
        DDIM stochasticity; 1 draws fresh noise at every step, as published.
    train_steps : int
        Optimiser updates (mini-batches) of training.
    batch_size : int
        Mini-batch size for training and for inference.
    lr : float
        Adam learning rate.
    lr_schedule : {"cosine", "constant"}
        Cosine decay to zero over ``train_steps`` or a constant rate. Cosine decay gives a
        lower final loss for a short CPU budget.
    hflip : bool
        Augment training images with random left-right flips (anatomy is near symmetric).
    max_shift : int
        Augment with random integer shifts of up to this many pixels (zero fill), which
        helps when only a few dozen training images exist.
    max_train_t : int, optional
        Train only on time steps 0..``max_train_t`` (default: all of 0..T−1). Localisation
        never calls the network above ``t_start``, so ``max_train_t = t_start`` spends the
        whole training budget on the steps that are used; keep the default when the model
        must serve other noise levels too.
    seed : int
        Seed of the reconstruction noise. Every image is reconstructed with the same draws
        (``chain().draw_noise((1, C, H, W), seed)``), so D is one fixed function: an image's
        map and score depend on the image and the model only, and the region test traces
        exactly the reconstruction the map shows.
    n_samples : int
        Compare with the mean of this many reconstructions (sample j uses the draws of
        ``seed + j * SAMPLE_SEED_STRIDE``): a less noisy D(X) at n_samples times the cost.
        The region test traces one reconstruction and needs 1.
    random_state : int
        Seed of weight initialisation, batch order, time steps, training noise and
        augmentation.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    verbose : bool
        Show a progress bar with the loss and ETA during training and inference.
    preprocessing : dict, optional
        Fields of :class:`~diffad.image.preprocessing.ImagePreprocessing` (e.g.
        ``{"intensity": "range"}``), fitted with the model and applied to every input;
        ``None`` (default) uses images as given, in model layout (N, C, H, W) or (N, H, W).
    score : {"ssim-ens", "l1", "ssim", "ssim-ens-mean"}
        Map used by :meth:`decision_function` and :meth:`calibrate`.
    image_score : {"max", "mean", "p99"}
        How a map becomes one image score.

    Attributes
    ----------
    model_ : UNet
        The trained ε-prediction network, in eval mode (BatchNorm uses running statistics).
    noise_schedule_ : NoiseSchedule
        The diffusion schedule the network was trained with.
    image_shape_ : tuple of int
        (C, H, W) of the training images; test images must match it.
    loss_history_ : numpy.ndarray
        Training loss of every update.
    train_seconds_ : float
        Wall-clock training time.

    Notes
    -----
    Images are used on the scale they are given (typically [0, 1]); the model is not told
    about any rescaling, so the reconstruction D(X) is on the same scale as X.
    """

    def __init__(
        self,
        unet: UNetConfig | dict | None = None,
        num_train_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        t_start: int = 250,
        ddim_steps: int = 5,
        eta: float = 1.0,
        train_steps: int = 2000,
        batch_size: int = 32,
        lr: float = 1e-3,
        lr_schedule: str = "cosine",
        hflip: bool = False,
        max_shift: int = 0,
        max_train_t: int | None = None,
        seed: int = 0,
        n_samples: int = 1,
        random_state: int = 0,
        device: str = "auto",
        verbose: bool = True,
        preprocessing: dict | None = None,
        score: str = "ssim-ens",
        image_score: str = "max",
    ) -> None:
        self.unet = unet
        self.num_train_steps = num_train_steps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.t_start = t_start
        self.ddim_steps = ddim_steps
        self.eta = eta
        self.train_steps = train_steps
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.hflip = hflip
        self.max_shift = max_shift
        self.max_train_t = max_train_t
        self.seed = seed
        self.n_samples = n_samples
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.preprocessing = preprocessing
        self.score = score
        self.image_score = image_score

    # ------------------------------------------------------------------ configuration
    def _check_params(self) -> None:
        self._check_training_params()
        if int(self.n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if int(self.max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")
        if self.max_train_t is not None and not 0 <= int(self.max_train_t) < int(
            self.num_train_steps
        ):
            raise ValueError(
                f"max_train_t must lie in [0, {self.num_train_steps - 1}], got {self.max_train_t}"
            )
        self.chain()

    def chain(self) -> ReconstructionChain:
        """The reconstruction chain of this model (its ``t_start``, ``ddim_steps``, ``eta``).

        Raises
        ------
        ValueError
            If ``t_start`` is outside [0, T) or the steps do not fit below it.
        """
        t_start = int(self.t_start)
        if not 0 <= t_start < int(self.num_train_steps):
            raise ValueError(f"t_start must lie in [0, {self.num_train_steps - 1}], got {t_start}")
        schedule = getattr(self, "noise_schedule_", None) or NoiseSchedule.linear(
            self.num_train_steps, self.beta_start, self.beta_end
        )
        return ReconstructionChain.from_start(schedule, t_start, int(self.ddim_steps), eta=self.eta)

    def _noise_draws(self, chain: ReconstructionChain, sample: int = 0) -> list[torch.Tensor]:
        """The chain's noise of reconstruction ``sample``, each (1, C, H, W), on the CPU."""
        seed = int(self.seed) + sample * SAMPLE_SEED_STRIDE
        return chain.draw_noise((1, *self.image_shape_), seed, "cpu")

    def region_map_definition(self) -> ReconstructionRegionMap:
        """E = |K ∗ (D(X) − X)| with D this model's chain and noise draws (one reconstruction).

        Raises
        ------
        ValueError
            For ``n_samples`` > 1: the region test traces a single reconstruction.
        """
        self._check_fitted()
        if int(self.n_samples) != 1:
            raise ValueError(
                f"the region test traces one reconstruction: set n_samples=1 (got {self.n_samples})"
            )
        chain = self.chain()
        return ReconstructionRegionMap(self.model_.eval(), chain, self._noise_draws(chain))

    # ------------------------------------------------------------------ training
    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random flips and integer shifts, drawn from ``gen`` (CPU) for reproducibility."""
        n = x.shape[0]
        if self.hflip:
            flip = torch.rand(n, generator=gen) < 0.5
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        s = int(self.max_shift)
        if s > 0:
            shifts = torch.randint(-s, s + 1, (n, 2), generator=gen).tolist()
            padded = F.pad(x, (s, s, s, s))  # zero fill: background of brain slices is 0
            h, w = x.shape[-2:]
            x = torch.stack(
                [
                    padded[i, :, s + dy : s + dy + h, s + dx : s + dx + w]
                    for i, (dy, dx) in enumerate(shifts)
                ]
            )
        return x

    def _fit_model(self, data: np.ndarray) -> None:
        """Train the ε-prediction network on prepared normal images (N, C, H, W)."""
        self._check_params()
        model = self._build_unet(data)
        device = next(model.parameters()).device
        schedule = NoiseSchedule.linear(self.num_train_steps, self.beta_start, self.beta_end)
        t_high = self.num_train_steps if self.max_train_t is None else int(self.max_train_t) + 1

        def loss_fn(net: UNet, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            x0 = self._augment(x0, gen)
            t = torch.randint(0, t_high, (x0.shape[0],), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            return F.mse_loss(net(schedule.add_noise_vp(x0, noise, t), t), noise)

        self._train_unet(model, data, loss_fn, "DDPM training")
        self.noise_schedule_ = schedule

    # ------------------------------------------------------------------ inference
    def _reconstruct(self, data: np.ndarray) -> np.ndarray:
        """D(X) for prepared (N, C, H, W) data: the mean of ``n_samples`` reconstructions."""
        self._check_params()
        chain = self.chain()
        rec = self._reconstruct_once(data, chain, self._noise_draws(chain))
        if int(self.n_samples) == 1:
            return rec
        total = rec.astype(np.float64)
        for j in range(1, int(self.n_samples)):
            total += self._reconstruct_once(data, chain, self._noise_draws(chain, j))
        return (total / int(self.n_samples)).astype(np.float32)

    def _reconstruct_once(
        self, data: np.ndarray, chain: ReconstructionChain, noises: list[torch.Tensor]
    ) -> np.ndarray:
        """One reconstruction of every image with the same noise draws (each (1, C, H, W)),
        in blocks of ``batch_size`` (:func:`~diffad.image.batch.map_in_blocks`)."""
        model = self.model_.eval()
        device = next(model.parameters()).device
        noises = [n.to(device) for n in noises]
        (rec,) = map_in_blocks(
            lambda x: chain.run(model, x, noises), data, self.batch_size, device,
            "reconstruct", self.verbose,
        )  # fmt: skip
        return rec

    def reconstruct(self, images: Any) -> np.ndarray:
        """Partial-noise DDIM reconstruction D(X) (the mean of ``n_samples``).

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W) with the training (C, H, W).

        Returns
        -------
        numpy.ndarray
            Reconstructions in the layout of ``images``, float32; the same image gives the
            same output in any batch.
        """
        rec = self._reconstruct(self.prepare(images))
        squeezed = self.preprocessing_ is None and np.ndim(images) == 3
        return rec[:, 0] if squeezed else rec

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint folder: JSON config (parameters, preprocessing, calibration
        scalars) and safetensors (weights with BatchNorm statistics, calibration arrays)."""
        return self._save_checkpoint(path, _KIND)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> DDPMLocalizer:
        """Read a checkpoint written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            Checkpoint folder.
        device : str, optional
            Override the stored device (``"auto"``, ``"cpu"``, ``"cuda"``).

        Raises
        ------
        ValueError
            Missing or unreadable files, a checkpoint of another class or architecture.
        """
        est, _ = cls._load_checkpoint(path, _KIND, device, renamed=CHECKPOINT_RENAMES)
        est.noise_schedule_ = NoiseSchedule.linear(
            est.num_train_steps, est.beta_start, est.beta_end
        )
        if getattr(est, "noise_rule_", None) != NOISE_RULE and hasattr(est, "threshold_"):
            # Its calibration scores came from maps with per-position noise: not the function
            # the model computes now, so they cannot rank new scores.
            for name in ("threshold_", "pixel_thresholds_", "calibration_scores_"):
                delattr(est, name)
            warnings.warn(
                f"checkpoint {path} was written when image i of a batch used the noise of "
                f"seed + i; it now reconstructs every image with the draws of seed={est.seed}. "
                "Its calibration was made with the old noise and was not loaded: call "
                "calibrate() with healthy images (or retrain with diffad train-image).",
                UserWarning,
                stacklevel=2,
            )
        return est
