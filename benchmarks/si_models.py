"""Train and cache the models of the synthetic selective-inference setting.

DDPM (``get_localizer``): one model per image size D, the published U-Net (channels
32-64-128-256) trained on 1000 i.i.d. N(0, 1) images of size D×D, reconstruction at T' = 460
with DDIM steps [460, 345, 230, 115, 0] and η = 1 — the published DAL-Test setting.

DISYRE (``get_disyre``): the same U-Net as a DISYRE restorer trained on 1000 i.i.d.
N(0.5, 0.1²) images clipped to [0, 1] (DAG needs [0, 1]), every pixel foreground, the
published severity ensemble (99, 74, 49, 24).

Models are cached outside git in ``~/.cache/diffad/si`` (or ``$DIFFAD_CACHE``), so training
happens once per size.

Usage: ``python benchmarks/si_models.py --size 8 [--train-steps 3000] [--model disyre]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.image.disyre_localizer import DisyreLocalizer

N_TRAIN = 1000
T_START = 460
N_STEPS = 5
#: Pixel mean and sd of the DISYRE setting's images (and of its null test images).
DISYRE_MEAN, DISYRE_SD = 0.5, 0.1


def cache_dir() -> Path:
    """Folder of the cached models (``$DIFFAD_CACHE`` or ``~/.cache/diffad``)."""
    root = os.environ.get("DIFFAD_CACHE", str(Path.home() / ".cache" / "diffad"))
    return Path(root) / "si"


def model_path(size: int, train_steps: int, seed: int, batch_size: int = 32) -> Path:
    """Checkpoint folder of one (size, training budget, seed, batch size)."""
    tag = "" if batch_size == 32 else f"_bs{batch_size}"
    return cache_dir() / f"ddpm_d{size}_steps{train_steps}{tag}_seed{seed}"


def get_disyre(
    size: int, train_steps: int = 3000, seed: int = 0, verbose: bool = True
) -> DisyreLocalizer:
    """The cached DISYRE localiser for ``size`` (see the module docstring), trained if missing."""
    path = cache_dir() / f"disyre_d{size}_steps{train_steps}_seed{seed}"
    if (path / "config.json").is_file():
        return DisyreLocalizer.load(path, device="cpu")
    rng = np.random.default_rng(seed)
    images = DISYRE_MEAN + DISYRE_SD * rng.standard_normal((N_TRAIN, 1, size, size))
    loc = DisyreLocalizer(
        train_steps=train_steps, random_state=seed, device="cpu", verbose=verbose
    ).fit(np.clip(images, 0, 1).astype(np.float32))
    loc.save(path)
    return loc


def get_localizer(
    size: int,
    train_steps: int = 3000,
    seed: int = 0,
    verbose: bool = True,
    batch_size: int = 32,
    device: str = "cpu",
) -> DDPMLocalizer:
    """The cached localizer for ``size``, training it first when missing.

    Parameters
    ----------
    size : int
        Image side D (divisible by 8 for the published U-Net).
    train_steps : int
        Adam updates of batch 32 (3000 ≈ 96 epochs of the 1000 images).
    seed : int
        Seed of the training images and of the training run.
    verbose : bool
        Progress bar while training.
    batch_size : int
        Training mini-batch (smaller only to afford large D on a busy CPU).
    device : str
        Where to train (when missing) and put the loaded model: ``"cpu"``, ``"cuda"`` or
        ``"auto"``. The cache does not depend on it.
    """
    path = model_path(size, train_steps, seed, batch_size)
    if (path / "config.json").is_file():
        return DDPMLocalizer.load(path, device=device)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((N_TRAIN, 1, size, size)).astype(np.float32)
    loc = DDPMLocalizer(
        t_start=T_START,
        ddim_steps=N_STEPS,
        eta=1.0,
        train_steps=train_steps,
        batch_size=batch_size,
        random_state=seed,
        device=device,
        verbose=verbose,
    )
    loc.fit(images)
    loc.save(path)
    return loc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[8])
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for size in args.size:
        loc = get_localizer(size, args.train_steps, args.seed, batch_size=args.batch_size)
        tail = float(np.mean(loc.loss_history_[-200:]))
        path = model_path(size, args.train_steps, args.seed, args.batch_size)
        print(f"D={size}: {path} final loss {tail:.4f}")


if __name__ == "__main__":
    main()
