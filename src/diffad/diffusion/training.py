"""The one training loop of every diffad network: seeded mini-batch Adam with a progress bar."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

#: ``loss_fn(model, batch, generator)`` returns a scalar loss; it draws its own noise, time
#: steps and augmentations from ``generator`` so that a run is reproducible from one seed.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]

LR_SCHEDULES = ("constant", "cosine")


@dataclass(eq=False)
class TrainingLog:
    """What :func:`train_network` did.

    Attributes
    ----------
    losses : numpy.ndarray
        Loss of every gradient step, float64.
    epoch_ends : list of int
        Number of steps taken when each (possibly partial) epoch ended.
    seconds : float
        Wall-clock training time.
    """

    losses: np.ndarray
    epoch_ends: list[int]
    seconds: float

    @property
    def n_steps(self) -> int:
        """Gradient steps taken."""
        return int(self.losses.size)

    def epoch_means(self) -> list[float]:
        """Mean loss of every epoch, summed in step order."""
        means, start = [], 0
        for end in self.epoch_ends:
            total = 0.0
            for value in self.losses[start:end].tolist():
                total += value
            means.append(total / max(end - start, 1))
            start = end
        return means


def steps_per_epoch(n_rows: int, batch_size: int, drop_last: bool) -> int:
    """Mini-batches in one pass over ``n_rows`` (at least 1)."""
    per_epoch = n_rows // batch_size if drop_last else math.ceil(n_rows / batch_size)
    return max(per_epoch, 1)


def train_network(
    model: nn.Module,
    data: torch.Tensor,
    loss_fn: LossFn,
    *,
    n_steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    lr_schedule: str = "constant",
    drop_last: bool = False,
    verbose: bool = False,
    desc: str = "training",
) -> TrainingLog:
    """Train ``model`` with Adam on shuffled mini-batches of ``data`` for ``n_steps`` steps.

    Every epoch draws a fresh permutation of the rows from ``generator``; the epoch ends after
    :func:`steps_per_epoch` batches (the last incomplete batch is dropped when ``drop_last``;
    a batch larger than the data takes all rows). The model is in train mode during the loop
    and in eval mode afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        Network, already on the device of ``data``.
    data : torch.Tensor
        Training examples along the first axis (rows or images).
    loss_fn : callable
        See ``LossFn``.
    n_steps : int
        Gradient steps (>= 1).
    batch_size : int
        Examples per step.
    lr : float
        Adam learning rate.
    generator : torch.Generator
        Source of the shuffling (and, through ``loss_fn``, of every other draw).
    weight_decay : float
        Adam weight decay (L2 added to the gradient, as in ``torch.optim.Adam``).
    lr_schedule : {"constant", "cosine"}
        Constant rate, or cosine decay to zero over ``n_steps``.
    drop_last : bool
        Drop the last incomplete batch of each epoch (needed with BatchNorm and batch 1).
    verbose : bool
        Show a tqdm bar with the running loss and the ETA.
    desc : str
        Bar label, also used in the error message.

    Returns
    -------
    TrainingLog

    Raises
    ------
    ValueError
        If the loss becomes NaN or infinite (the message says at which step).
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    n = data.shape[0]
    per_epoch = steps_per_epoch(n, batch_size, drop_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps)
        if lr_schedule == "cosine"
        else None
    )
    losses = np.empty(n_steps, dtype=np.float64)
    epoch_ends: list[int] = []
    step = 0
    start = time.perf_counter()
    model.train()
    with tqdm(total=n_steps, desc=desc, disable=not verbose, unit="step", leave=False) as bar:
        while step < n_steps:
            perm = torch.randperm(n, generator=generator, device=generator.device)
            for b in range(per_epoch):
                if step >= n_steps:
                    break
                idx = perm[b * batch_size : (b + 1) * batch_size].to(data.device)
                loss = loss_fn(model, data[idx], generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                losses[step] = float(loss.detach())
                if not math.isfinite(losses[step]):
                    raise ValueError(
                        f"{desc}: training loss became {losses[step]} at step {step + 1}; "
                        "lower lr or check the data scale"
                    )
                step += 1
                bar.update(1)
                if step % 10 == 0 or step == n_steps:
                    recent = losses[max(0, step - 50) : step].mean()
                    bar.set_postfix(loss=f"{recent:.4f}", epoch=len(epoch_ends) + 1)
            epoch_ends.append(step)
    model.eval()
    return TrainingLog(losses, epoch_ends, time.perf_counter() - start)
