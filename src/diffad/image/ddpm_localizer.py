"""DDPMLocalizer: a DDPM trained on normal images that maps where a test image differs.

Training is plain ε-prediction (Ho et al., 2020) with uniform time steps. Localisation noises
a test image to ``t_start`` and denoises it with a short DDIM chain
(:func:`diffad.diffusion.chain.reconstruct`, all noise from one seeded generator), then
compares the image with its reconstruction D(X) (:mod:`diffad.image.scores`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from diffad.diffusion.chain import ReconstructionChain
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image.localizer_base import ImageLocalizer
from diffad.image.scores import anomaly_score
from diffad.selective.tracer import ReconstructionTracer

_KIND = "DDPMLocalizer"
#: Parameter names of older checkpoints → current names (applied when loading).
CHECKPOINT_RENAMES = {"n_steps": "ddim_steps"}
# Seed offset between the reconstructions averaged by ``n_samples``: large, so that sample j
# of image i (seed + i + j * stride) never reuses another image's noise in batches < 10⁶.
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
    random_state : int
        Seed of weight initialisation, batch order, time steps, noise and augmentation.
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
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.preprocessing = preprocessing
        self.score = score
        self.image_score = image_score

    # ------------------------------------------------------------------ configuration
    def _check_params(self) -> None:
        self._check_training_params()
        if int(self.max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")
        if self.max_train_t is not None and not 0 <= int(self.max_train_t) < int(
            self.num_train_steps
        ):
            raise ValueError(
                f"max_train_t must lie in [0, {self.num_train_steps - 1}], got {self.max_train_t}"
            )
        self.chain()

    def chain(
        self, t_start: int | None = None, ddim_steps: int | None = None
    ) -> ReconstructionChain:
        """The reconstruction chain of this model (default: its ``t_start`` and ``ddim_steps``).

        Raises
        ------
        ValueError
            If ``t_start`` is outside [0, T) or the steps do not fit below it.
        """
        t_start = int(self.t_start if t_start is None else t_start)
        ddim_steps = int(self.ddim_steps if ddim_steps is None else ddim_steps)
        if not 0 <= t_start < int(self.num_train_steps):
            raise ValueError(f"t_start must lie in [0, {self.num_train_steps - 1}], got {t_start}")
        schedule = getattr(self, "noise_schedule_", None) or NoiseSchedule.linear(
            self.num_train_steps, self.beta_start, self.beta_end
        )
        return ReconstructionChain.from_start(schedule, t_start, ddim_steps, eta=self.eta)

    def region_tracer(
        self,
        shape: tuple[int, int, int],
        seed: int,
        filter_size: int,
        device: torch.device | str,
        t_start: int | None = None,
        ddim_steps: int | None = None,
    ) -> ReconstructionTracer:
        """The tracer of the region-test map |K ∗ (D(X) − X)| along a line, for images of
        ``shape`` and the reconstruction noise of ``seed`` (default chain: :meth:`chain`)."""
        chain = self.chain(t_start, ddim_steps)
        noises = chain.draw_noise((1, *shape), int(seed), "cpu")
        return ReconstructionTracer(
            self.model_.eval(), chain, noises, filter_size=int(filter_size), device=device
        )

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
    def _reconstruct(self, data: np.ndarray, seed: int, n_samples: int) -> np.ndarray:
        return self._mean_reconstruction(data, self.chain(), seed, n_samples)

    def _reconstruct_batch(
        self, data: np.ndarray, chain: ReconstructionChain, seed: int
    ) -> np.ndarray:
        """D(X) for validated (N, C, H, W) data; image i uses the noise of seed ``seed + i``."""
        model = self.model_.eval()
        device = next(model.parameters()).device
        out = np.empty_like(data)
        bs = max(1, int(self.batch_size))
        chunks = range(0, len(data), bs)
        bar = tqdm(chunks, desc="reconstruct", disable=not self.verbose or len(chunks) < 2)
        with torch.no_grad():
            for lo in bar:
                x = torch.from_numpy(data[lo : lo + bs]).to(device)
                # One generator per image (seed + i): a map never depends on batch_size or on
                # the other images, and a single image with seed s replays the exact noise that
                # DAL-Test selection draws with chain.draw_noise(seed=s).
                per_image = [
                    chain.draw_noise((1, *x.shape[1:]), int(seed) + lo + i, device)
                    for i in range(len(x))
                ]
                noises = [torch.cat(parts) for parts in zip(*per_image, strict=True)]
                out[lo : lo + bs] = chain.run(model, x, noises).cpu().numpy()
        return out

    def reconstruct(
        self,
        images: Any,
        t_start: int | None = None,
        ddim_steps: int | None = None,
        seed: int = 0,
        n_samples: int = 1,
        **deprecated: Any,
    ) -> np.ndarray:
        """Seeded partial-noise DDIM reconstruction D(X).

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W) with the training (C, H, W).
        t_start, ddim_steps : int, optional
            Override the constructor's noise level and number of DDIM calls.
        seed : int
            Image ``i`` uses the noise drawn by ``self.chain().draw_noise((1, C, H, W),
            seed + i)``; the same call gives bit-identical output.
        n_samples : int
            Average this many reconstructions (sample j uses ``seed + j * SAMPLE_SEED_STRIDE``):
            less noise in D(X), at n_samples times the cost.

        Returns
        -------
        numpy.ndarray
            Reconstructions in the layout of ``images``, float32.
        """
        if "n_steps" in deprecated:
            ddim_steps = renamed_keyword(
                "reconstruct", "n_steps", "ddim_steps", deprecated.pop("n_steps")
            )
        if deprecated:
            raise TypeError(f"reconstruct() got unexpected keyword(s) {sorted(deprecated)}")
        data = self.prepare(images)
        rec = self._mean_reconstruction(data, self.chain(t_start, ddim_steps), seed, n_samples)
        squeezed = self.preprocessing_ is None and np.ndim(images) == 3
        return rec[:, 0] if squeezed else rec

    def _mean_reconstruction(
        self, data: np.ndarray, chain: ReconstructionChain, seed: int, n_samples: int
    ) -> np.ndarray:
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        rec = self._reconstruct_batch(data, chain, seed)
        if n_samples == 1:
            return rec
        total = rec.astype(np.float64)
        for j in range(1, int(n_samples)):
            total += self._reconstruct_batch(data, chain, int(seed) + j * SAMPLE_SEED_STRIDE)
        return (total / int(n_samples)).astype(np.float32)

    def anomaly_map(
        self,
        images: Any,
        score: str | None = None,
        seed: int = 0,
        t_start: int | None = None,
        ddim_steps: int | None = None,
        n_samples: int = 1,
        **score_kwargs: Any,
    ) -> np.ndarray:
        """Pixel anomaly map of each image (higher = more anomalous).

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W) with the training (C, H, W).
        score : str, optional
            ``"l1"``, ``"ssim"``, ``"ssim-ens"`` or ``"ssim-ens-mean"`` (see
            :func:`diffad.image.scores.anomaly_score`); default: the ``score`` parameter.
        seed : int
            Reconstruction seed (see :meth:`reconstruct`).
        t_start, ddim_steps : int, optional
            Override the constructor's reconstruction settings.
        n_samples : int
            Compare with the mean of this many reconstructions (see :meth:`reconstruct`).
        **score_kwargs
            Passed to the score (e.g. ``sigma=1.5`` for ``"ssim"``, ``data_range``).

        Returns
        -------
        numpy.ndarray
            Shape (N, H, W), float32; channels are averaged.
        """
        if "n_steps" in score_kwargs:
            ddim_steps = renamed_keyword(
                "anomaly_map", "n_steps", "ddim_steps", score_kwargs.pop("n_steps")
            )
        data = self.prepare(images)
        rec = self._mean_reconstruction(data, self.chain(t_start, ddim_steps), seed, n_samples)
        return anomaly_score(data, rec, score or self.score, **score_kwargs)

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
        return est
