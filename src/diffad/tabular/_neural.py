"""Base class of the neural tabular detectors: seeded training loop, device, checkpoints."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from diffad.device import resolve_device
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.training import steps_per_epoch, train_network
from diffad.tabular._base import TabularDetector


class NeuralTabularDetector(TabularDetector):
    """Shared parameters and plumbing of the network-based detectors.

    Subclasses have the parameters ``T``, ``beta_start`` and ``beta_end`` (the linear noise
    schedule, fitted as ``noise_schedule_``) and define ``_build_network(n_features)``,
    ``_loss(model, batch, generator)`` and ``_score_batch(model, batch)``.
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
        self.noise_schedule_ = self._noise_schedule()
        device = resolve_device(self.device)
        devices = [device] if device.type == "cuda" else []
        data = torch.as_tensor(Z, dtype=torch.float32, device=device)
        drop_last = self._drop_last(Z.shape[0])
        per_epoch = steps_per_epoch(Z.shape[0], schedule["batch_size"], drop_last)
        n_steps = schedule["epochs"] * per_epoch
        if schedule["max_steps"] is not None:
            n_steps = min(n_steps, schedule["max_steps"])
        # Seed the global RNG (weight init, dropout) inside a fork so the caller's RNG state
        # is untouched; shuffling, timesteps and noise come from an explicit generator.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.random_state)
            self.network_ = self._build_network(Z.shape[1]).to(device)
            generator = torch.Generator(device=device)
            generator.manual_seed(self.random_state)
            log = train_network(
                self.network_,
                data,
                self._loss,
                n_steps=n_steps,
                batch_size=schedule["batch_size"],
                lr=schedule["lr"],
                weight_decay=self.weight_decay,
                generator=generator,
                drop_last=drop_last,
                verbose=self.verbose,
                desc=type(self).__name__,
            )
            self.loss_history_ = log.epoch_means()
            self.n_train_steps_ = log.n_steps
            return self._score_standardised(Z)

    def _noise_schedule(self) -> NoiseSchedule:
        """The linear β schedule of the parameters ``T``, ``beta_start``, ``beta_end``."""
        return NoiseSchedule.linear(self.T, self.beta_start, self.beta_end)

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
        context = self._scoring_context(device)
        out = []
        for start in range(0, Z.shape[0], self.score_batch_size):
            batch = torch.as_tensor(
                Z[start : start + self.score_batch_size], dtype=torch.float32, device=device
            )
            out.append(self._score_batch(model, batch, context).double().cpu().numpy())
        return np.concatenate(out)

    def _scoring_context(self, device: torch.device) -> Any:
        """Per-call state shared by the batches of one scoring call (e.g. a seeded noise
        generator); created anew by every call so that scoring never changes the detector."""
        return None

    # ---------------------------------------------------------------- subclass API
    def _build_network(self, n_features: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loss(
        self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_batch(
        self, model: nn.Module, batch: torch.Tensor, context: Any
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def _state_tensors(self) -> dict[str, torch.Tensor | np.ndarray]:
        return {f"net.{k}": v for k, v in self.network_.state_dict().items()}

    def _load_state(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        device = resolve_device(self.device)
        self.noise_schedule_ = self._noise_schedule()
        net = self._build_network(int(config["n_features_in"]))
        state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"checkpoint weights do not fit {type(self).__name__}: {err}") from err
        self.network_ = net.to(device).eval()
