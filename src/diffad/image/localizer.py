"""DDPMLocalizer: a DDPM trained on normal images that maps where a test image differs.

Training is plain ε-prediction (Ho et al., 2020) with uniform time steps. Localisation noises
a test image to ``t_start`` and denoises it with a short DDIM chain
(:func:`diffad.image.reconstruct.reconstruct`, all noise from one seeded generator), then
compares the image with its reconstruction D(X) (:mod:`diffad.image.scores`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch.nn import functional as F
from tqdm.auto import tqdm

from diffad.checkpoint import load_checkpoint, save_checkpoint
from diffad.device import resolve_device
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image.reconstruct import ddim_timesteps, draw_reconstruction_noise, reconstruct
from diffad.image.scores import anomaly_score

_KIND = "DDPMLocalizer"
# Seed offset between the reconstructions averaged by ``n_samples``: large, so that sample j
# of image i (seed + i + j * stride) never reuses another image's noise in batches < 10⁶.
SAMPLE_SEED_STRIDE = 1_000_003


def as_image_batch(images: Any, name: str = "images") -> tuple[np.ndarray, bool]:
    """Validate images and return them as float32 (N, C, H, W).

    Parameters
    ----------
    images : array-like or torch.Tensor
        Shape (N, H, W) (grey-scale) or (N, C, H, W).
    name : str
        Used in error messages.

    Returns
    -------
    batch : numpy.ndarray
        Float32 array of shape (N, C, H, W).
    squeezed : bool
        True when the input had no channel axis.

    Raises
    ------
    ValueError
        Empty input, wrong number of dimensions, or NaN/inf pixels.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    try:
        arr = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from err
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    squeezed = arr.ndim == 3
    if squeezed:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contain {bad} NaN or infinite pixel(s)")
    return arr, squeezed


class DDPMLocalizer(BaseEstimator):
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
    n_steps : int
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

    Attributes
    ----------
    model_ : UNet
        The trained ε-prediction network, in eval mode (BatchNorm uses running statistics).
    schedule_ : NoiseSchedule
        The training schedule.
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
        n_steps: int = 5,
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
    ) -> None:
        self.unet = unet
        self.num_train_steps = num_train_steps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.t_start = t_start
        self.n_steps = n_steps
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

    # ------------------------------------------------------------------ configuration
    def _unet_config(self, in_channels: int) -> UNetConfig:
        """The architecture to build, with ``in_channels`` filled in from the data."""
        if self.unet is None:
            return UNetConfig(in_channels=in_channels)
        if isinstance(self.unet, UNetConfig):
            cfg = dict(asdict(self.unet))
        elif isinstance(self.unet, dict):
            cfg = dict(self.unet)
            cfg.setdefault("in_channels", in_channels)
        else:
            raise ValueError(f"unet must be a UNetConfig, a dict or None, got {type(self.unet)}")
        try:
            config = UNetConfig(**cfg)
        except TypeError as err:
            raise ValueError(f"invalid unet configuration {cfg}: {err}") from err
        if config.in_channels != in_channels:
            raise ValueError(
                f"unet.in_channels={config.in_channels} but the images have "
                f"{in_channels} channel(s)"
            )
        return config

    def _check_params(self) -> None:
        if int(self.train_steps) < 1 or int(self.batch_size) < 1:
            raise ValueError("train_steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(
                f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}"
            )
        if int(self.max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")
        if self.max_train_t is not None and not 0 <= int(self.max_train_t) < int(
            self.num_train_steps
        ):
            raise ValueError(
                f"max_train_t must lie in [0, {self.num_train_steps - 1}], got {self.max_train_t}"
            )
        self._check_chain(self.t_start, self.n_steps)

    def _check_chain(self, t_start: int, n_steps: int) -> list[int]:
        if not 0 <= int(t_start) < int(self.num_train_steps):
            raise ValueError(f"t_start must lie in [0, {self.num_train_steps - 1}], got {t_start}")
        return ddim_timesteps(int(t_start), int(n_steps))

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

    def fit(self, images: Any, y: Any = None) -> DDPMLocalizer:
        """Train the ε-prediction network on normal images.

        Parameters
        ----------
        images : array-like
            Normal images, (N, H, W) or (N, C, H, W), float, typically in [0, 1].
        y : ignored
            Present for scikit-learn compatibility.

        Returns
        -------
        DDPMLocalizer
            The fitted estimator.
        """
        self._check_params()
        data, _ = as_image_batch(images, "training images")
        if len(data) < 2:
            # BatchNorm needs more than one value per channel in training mode.
            raise ValueError(f"need at least 2 training images, got {len(data)}")
        config = self._unet_config(data.shape[1])
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[]):
            # Weight initialisation uses the global generator; fork it so that fitting is
            # seeded without changing the caller's random state.
            torch.manual_seed(int(self.random_state))
            model = UNet(config)
        model.check_input(torch.from_numpy(data[:1]))
        model.to(device).train()
        schedule = NoiseSchedule.linear(self.num_train_steps, self.beta_start, self.beta_end)
        alpha_bars = torch.as_tensor(schedule.alpha_bars, dtype=torch.float32, device=device)
        x_all = torch.from_numpy(data).to(device)
        gen = torch.Generator().manual_seed(int(self.random_state))
        opt = torch.optim.Adam(model.parameters(), lr=float(self.lr))
        steps = int(self.train_steps)
        t_high = self.num_train_steps if self.max_train_t is None else int(self.max_train_t) + 1
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            if self.lr_schedule == "cosine"
            else None
        )
        n, bs = len(data), min(int(self.batch_size), len(data))
        losses = np.empty(steps, dtype=np.float64)
        order = torch.randperm(n, generator=gen)
        pos = 0
        start = time.perf_counter()
        bar = tqdm(range(steps), desc="DDPM training", disable=not self.verbose, leave=False)
        for step in bar:
            if pos + bs > n:  # reshuffle each epoch; the last partial batch is skipped
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos : pos + bs]
            pos += bs
            x0 = self._augment(x_all[idx.to(device)], gen)
            t = torch.randint(0, t_high, (bs,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            ab = alpha_bars[t.to(device)][:, None, None, None]
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
            loss = F.mse_loss(model(xt, t.to(device)), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses[step] = loss.item()
            if not math.isfinite(losses[step]):
                raise ValueError(f"training diverged at step {step} (loss {losses[step]})")
            if step % 10 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{losses[max(0, step - 49) : step + 1].mean():.4f}")
        bar.close()
        self.train_seconds_ = time.perf_counter() - start
        self.model_ = model.eval()
        self.schedule_ = schedule
        self.image_shape_ = tuple(int(v) for v in data.shape[1:])
        self.loss_history_ = losses
        return self

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ValueError("this DDPMLocalizer is not fitted yet: call fit() or load() first")

    def _check_test_images(self, images: Any) -> tuple[np.ndarray, bool]:
        self._check_fitted()
        data, squeezed = as_image_batch(images)
        c, h, w = self.image_shape_
        if data.shape[1] != c:
            raise ValueError(f"the model takes {c} channel(s), the images have {data.shape[1]}")
        if tuple(data.shape[2:]) != (h, w):
            raise ValueError(
                f"images are {data.shape[2]}x{data.shape[3]} pixels but the model was trained "
                f"on {h}x{w}"
            )
        return data, squeezed

    def _reconstruct_batch(
        self, data: np.ndarray, t_start: int | None, n_steps: int | None, seed: int
    ) -> np.ndarray:
        """D(X) for validated (N, C, H, W) data; image i uses the noise of seed ``seed + i``."""
        steps = self._check_chain(
            self.t_start if t_start is None else t_start,
            self.n_steps if n_steps is None else n_steps,
        )
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
                # DAL-Test selection draws with draw_reconstruction_noise(seed=s).
                per_image = [
                    draw_reconstruction_noise((1, *x.shape[1:]), steps, int(seed) + lo + i, device)
                    for i in range(len(x))
                ]
                noises = [torch.cat(parts) for parts in zip(*per_image, strict=True)]
                rec = reconstruct(model, self.schedule_, x, steps, noises, eta=self.eta)
                out[lo : lo + bs] = rec.cpu().numpy()
        return out

    def reconstruct(
        self,
        images: Any,
        t_start: int | None = None,
        n_steps: int | None = None,
        seed: int = 0,
        n_samples: int = 1,
    ) -> np.ndarray:
        """Seeded partial-noise DDIM reconstruction D(X).

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W) with the training (C, H, W).
        t_start, n_steps : int, optional
            Override the constructor's noise level and number of DDIM calls.
        seed : int
            Image ``i`` uses the noise drawn by
            ``draw_reconstruction_noise((1, C, H, W), steps, seed + i)``; the same call gives
            bit-identical output.
        n_samples : int
            Average this many reconstructions (sample j uses ``seed + j * SAMPLE_SEED_STRIDE``):
            less noise in D(X), at n_samples times the cost.

        Returns
        -------
        numpy.ndarray
            Reconstructions in the layout of ``images``, float32.
        """
        data, squeezed = self._check_test_images(images)
        rec = self._mean_reconstruction(data, t_start, n_steps, seed, n_samples)
        return rec[:, 0] if squeezed else rec

    def _mean_reconstruction(
        self,
        data: np.ndarray,
        t_start: int | None,
        n_steps: int | None,
        seed: int,
        n_samples: int,
    ) -> np.ndarray:
        if int(n_samples) < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        rec = self._reconstruct_batch(data, t_start, n_steps, seed)
        if n_samples == 1:
            return rec
        total = rec.astype(np.float64)
        for j in range(1, int(n_samples)):
            total += self._reconstruct_batch(
                data, t_start, n_steps, int(seed) + j * SAMPLE_SEED_STRIDE
            )
        return (total / int(n_samples)).astype(np.float32)

    def anomaly_map(
        self,
        images: Any,
        score: str = "ssim-ens",
        seed: int = 0,
        t_start: int | None = None,
        n_steps: int | None = None,
        n_samples: int = 1,
        **score_kwargs: Any,
    ) -> np.ndarray:
        """Pixel anomaly map of each image (higher = more anomalous).

        Parameters
        ----------
        images : array-like
            (N, H, W) or (N, C, H, W) with the training (C, H, W).
        score : str
            ``"l1"``, ``"ssim"``, ``"ssim-ens"`` or ``"ssim-ens-mean"``; see
            :func:`diffad.image.scores.anomaly_score`.
        seed : int
            Reconstruction seed (see :meth:`reconstruct`).
        t_start, n_steps : int, optional
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
        data, _ = self._check_test_images(images)
        rec = self._mean_reconstruction(data, t_start, n_steps, seed, n_samples)
        return anomaly_score(data, rec, score, **score_kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint folder (JSON config + safetensors weights, BatchNorm stats too)."""
        self._check_fitted()
        params = self.get_params(deep=False)
        params["unet"] = self.model_.config.to_dict()
        config = {
            "params": params,
            "image_shape": list(self.image_shape_),
            "train_seconds": float(getattr(self, "train_seconds_", float("nan"))),
        }
        tensors = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        tensors["loss_history"] = np.asarray(self.loss_history_, dtype=np.float64)
        return save_checkpoint(path, _KIND, config, tensors)

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
        config, tensors = load_checkpoint(path, _KIND)
        try:
            params = dict(config["params"])
            if device is not None:
                params["device"] = device
            est = cls(**params)
            unet_config = UNetConfig(**params["unet"])
            image_shape = tuple(int(v) for v in config["image_shape"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"checkpoint {path} has an invalid config: {err}") from err
        model = UNet(unet_config)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"checkpoint {path} does not match its architecture: {err}") from err
        est.model_ = model.to(resolve_device(est.device)).eval()
        est.schedule_ = NoiseSchedule.linear(est.num_train_steps, est.beta_start, est.beta_end)
        est.image_shape_ = image_shape
        est.loss_history_ = tensors["loss_history"].numpy() if "loss_history" in tensors else None
        est.train_seconds_ = float(config.get("train_seconds", float("nan")))
        return est
