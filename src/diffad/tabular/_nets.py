"""Networks of the tabular detectors: the DTE MLP and the DDPM ε-network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diffad.diffusion.embedding import timestep_embedding


class DTEMLP(nn.Module):
    """MLP of the DTE paper: Linear+ReLU layers, dropout after every hidden layer but the first.

    With ``hidden_sizes=(256, 512, 256)`` this is d→256→512→256→n_out with dropout after the
    2nd and 3rd hidden layers, the published DTE-C network.

    Parameters
    ----------
    n_in : int
        Number of input features.
    hidden_sizes : sequence of int
        Widths of the hidden layers (at least one).
    n_out : int
        Output width (number of time bins, or 1 for DTE-IG).
    dropout : float
        Dropout probability.
    """

    def __init__(
        self, n_in: int, hidden_sizes: Sequence[int], n_out: int, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if len(hidden_sizes) == 0:
            raise ValueError("hidden_sizes needs at least one layer")
        sizes = [int(n_in), *[int(h) for h in hidden_sizes]]
        layers: list[nn.Module] = []
        for i in range(1, len(sizes)):
            layers += [nn.Linear(sizes[i - 1], sizes[i]), nn.ReLU()]
            if i > 1:  # no dropout right after the input layer, as published
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], int(n_out)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (batch, n_in) to (batch, n_out) logits / raw outputs."""
        return self.net(x)


class _ResidualBlock(nn.Module):
    """Pre-norm residual block: x + Drop(Lin(Drop(ReLU(Lin(BN(x))))))."""

    def __init__(self, width: int, hidden: int, dropout_first: float, dropout_second: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(width),
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Dropout(dropout_first),
            nn.Linear(hidden, width),
            nn.Dropout(dropout_second),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class EpsilonResNet(nn.Module):
    """ε-prediction network for tabular DDPM: a tabular ResNet with an additive time embedding.

    The shape follows the DDPM baseline of the DTE paper (Gorishniy et al.'s tabular ResNet,
    width 128, 3 blocks of hidden width 256, dropout 0.4/0.1, time embedding of width 256 added
    after the input layer).

    Parameters
    ----------
    n_in : int
        Number of features (also the output width: the predicted noise).
    width, hidden, n_blocks : int
        Residual stream width, block hidden width and number of blocks.
    time_dim : int
        Width of the sinusoidal time embedding.
    dropout_first, dropout_second : float
        Dropout inside each block.
    """

    def __init__(
        self,
        n_in: int,
        width: int = 128,
        hidden: int = 256,
        n_blocks: int = 3,
        time_dim: int = 256,
        dropout_first: float = 0.4,
        dropout_second: float = 0.1,
    ) -> None:
        super().__init__()
        self.time_dim = int(time_dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, width),
        )
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.Sequential(
            *[_ResidualBlock(width, hidden, dropout_first, dropout_second) for _ in range(n_blocks)]
        )
        self.head = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, n_in))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``x`` (batch, n_in) at integer steps ``t`` (batch,)."""
        # The time branch depends on t only: evaluate it once per distinct step (all rows
        # share one step during reconstruction), then gather.
        steps, inverse = torch.unique(t, return_inverse=True)
        h_t = self.time_mlp(timestep_embedding(steps, self.time_dim, flip_sin_to_cos=True))[inverse]
        return self.head(self.blocks(self.inp(x) + h_t))
