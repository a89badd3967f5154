"""Base class of the neural tabular detectors: seeded training loop, device, checkpoints."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from diffad.device import resolve_device
from diffad.tabular._base import TabularDetector

LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def train_network(
    model: nn.Module,
    data: torch.Tensor,
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    max_steps: int | None,
    generator: torch.Generator,
    verbose: bool,
    desc: str,
    drop_last: bool = False,
) -> tuple[list[float], int]:
    """Train ``model`` with Adam on shuffled mini-batches of ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        Network, already on the device of ``data``.
    data : torch.Tensor
        Training rows, shape (n, d).
    loss_fn : callable
        ``loss_fn(model, batch, generator)`` returning a scalar loss; it draws its own noise
        and timesteps from ``generator``.
    epochs, batch_size : int
        Passes over the data and rows per step.
    lr, weight_decay : float
        Adam settings (weight decay as in ``torch.optim.Adam``, i.e. L2 added to the gradient).
    max_steps : int or None
        Cap on the total number of gradient steps (None: no cap). Training stops after the
        step that reaches it, even mid-epoch.
    generator : torch.Generator
        Source of the shuffling (and, via ``loss_fn``, of the noise).
    verbose : bool
        Show a tqdm bar (steps, loss, ETA).
    desc : str
        Bar label.
    drop_last : bool
        Drop the last incomplete batch of each epoch (needed with BatchNorm and batch 1).

    Returns
    -------
    history : list of float
        Mean loss of every (possibly partial) epoch.
    n_steps : int
        Gradient steps taken.
    """
    n = data.shape[0]
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    per_epoch = max(per_epoch, 1)
    total = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, max_steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    history: list[float] = []
    step = 0
    with tqdm(total=total, desc=desc, disable=not verbose, unit="step", leave=False) as bar:
        while step < total:
            perm = torch.randperm(n, generator=generator, device=data.device)
            running, count = 0.0, 0
            for b in range(per_epoch):
                if step >= total:
                    break
                idx = perm[b * batch_size : (b + 1) * batch_size]
                loss = loss_fn(model, data[idx], generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running += float(loss.detach())
                count += 1
                step += 1
                bar.update(1)
            history.append(running / max(count, 1))
            bar.set_postfix(loss=f"{history[-1]:.4f}", epoch=len(history))
            if not math.isfinite(history[-1]):
                raise ValueError(
                    f"{desc}: training loss became {history[-1]} at epoch {len(history)}; "
                    "lower lr or check the data scale"
                )
    model.eval()
    return history, step


class NeuralTabularDetector(TabularDetector):
    """Shared parameters and plumbing of the network-based detectors.

    Subclasses define ``_build_network(n_features)``, ``_loss(model, batch, generator)`` and
    ``_score_batch(model, batch)``.
    """

    #: The published training schedule: 400 epochs of batch 64 at lr 1e-4, no step cap.
    PAPER_TRAINING: ClassVar[dict[str, Any]] = {
        "epochs": 400,
        "batch_size": 64,
        "lr": 1e-4,
        "max_steps": None,
    }

    @classmethod
    def paper_settings(cls, **overrides: Any) -> NeuralTabularDetector:
        """An instance with the published training schedule (``PAPER_TRAINING``) instead of
        the step-capped default; ``overrides`` set any other parameter."""
        return cls(**{**cls.PAPER_TRAINING, **overrides})

    def _training_schedule(self, n_rows: int) -> dict[str, Any]:
        """The ``epochs``, ``batch_size``, ``lr`` and ``max_steps`` to train on ``n_rows`` rows;
        subclasses that choose them from the data size override this."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "max_steps": self.max_steps,
        }

    def _fit_standardised(self, Z: np.ndarray) -> np.ndarray:
        schedule = self._training_schedule(Z.shape[0])
        self._check_training_params(schedule)
        self.training_schedule_ = schedule
        device = resolve_device(self.device)
        devices = [device] if device.type == "cuda" else []
        data = torch.as_tensor(Z, dtype=torch.float32, device=device)
        # Seed the global RNG (weight init, dropout) inside a fork so the caller's RNG state
        # is untouched; shuffling, timesteps and noise come from an explicit generator.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.random_state)
            self.network_ = self._build_network(Z.shape[1]).to(device)
            generator = torch.Generator(device=device)
            generator.manual_seed(self.random_state)
            self.loss_history_, self.n_steps_ = train_network(
                self.network_,
                data,
                self._loss,
                **schedule,
                weight_decay=self.weight_decay,
                generator=generator,
                verbose=self.verbose,
                desc=type(self).__name__,
                drop_last=self._drop_last(Z.shape[0]),
            )
            return self._score_standardised(Z)

    def _drop_last(self, n_rows: int) -> bool:
        return False

    def _check_training_params(self, schedule: dict[str, Any]) -> None:
        for name in ("epochs", "batch_size"):
            value = schedule[name]
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        max_steps = schedule["max_steps"]
        if max_steps is not None and (not isinstance(max_steps, int | np.integer) or max_steps < 1):
            raise ValueError(f"max_steps must be None or a positive integer, got {max_steps!r}")
        if not isinstance(schedule["lr"], numbers.Real) or not schedule["lr"] > 0:
            raise ValueError(f"lr must be a number > 0, got {schedule['lr']!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @torch.no_grad()
    def _score_standardised(self, Z: np.ndarray) -> np.ndarray:
        model = self.network_
        model.eval()
        device = next(model.parameters()).device
        out = []
        for start in range(0, Z.shape[0], self.score_batch_size):
            batch = torch.as_tensor(
                Z[start : start + self.score_batch_size], dtype=torch.float32, device=device
            )
            out.append(self._score_batch(model, batch).double().cpu().numpy())
        return np.concatenate(out)

    # ---------------------------------------------------------------- subclass API
    def _build_network(self, n_features: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(
        self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_batch(
        self, model: nn.Module, batch: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def _state_tensors(self) -> dict[str, torch.Tensor | np.ndarray]:
        return {f"net.{k}": v for k, v in self.network_.state_dict().items()}

    def _load_state(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        device = resolve_device(self.device)
        net = self._build_network(int(config["n_features_in"]))
        state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"checkpoint weights do not fit {type(self).__name__}: {err}") from err
        self.network_ = net.to(device).eval()
