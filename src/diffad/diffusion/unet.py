"""Piecewise-linear U-Net for ε-prediction on images.

Every operation on the image path is conv, eval-mode BatchNorm, ReLU/LeakyReLU, average
pooling, nearest/bilinear up-sampling, concatenation or addition, so for a fixed time step
the network is piecewise affine in its input. Selective inference (``diffad.selective``)
traces it exactly; do not add GroupNorm, SiLU or attention to this class.

The default configuration is the published DAL-Test network: channels 32-64-128-256, one
3×3 conv per block as ReLU(BN(conv(x + MLP(t_emb)))), AvgPool(2) down, bilinear ×2 up with
skip concatenation and a 1×1 output conv.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from diffad.diffusion.embedding import timestep_embedding


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet`; stored as JSON in checkpoints.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for grey-scale).
    channels : list of int
        Width of each resolution level; its length sets the depth (len - 1 poolings).
    time_dim : int
        Size of the sinusoidal time embedding and of the time MLP.
    activation : {"relu", "leaky_relu"}
        Non-linearity after every block.
    negative_slope : float
        Slope of LeakyReLU for negative inputs.
    upsample : {"bilinear", "nearest"}
        ×2 up-sampling mode in the decoder.
    batch_norm : bool
        Use BatchNorm after each conv (affine in eval mode).
    """

    in_channels: int = 1
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    time_dim: int = 64
    activation: str = "relu"
    negative_slope: float = 0.01
    upsample: str = "bilinear"
    batch_norm: bool = True

    def __post_init__(self) -> None:
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if len(self.channels) < 1 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty list of positive ints: {self.channels}")
        if self.activation not in ("relu", "leaky_relu"):
            raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {self.activation!r}")
        if self.upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest', got {self.upsample!r}")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be even and >= 2, got {self.time_dim}")
        self.channels = [int(c) for c in self.channels]

    @property
    def downsample_factor(self) -> int:
        """Image sides must be divisible by this number."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


class UNetBlock(nn.Module):
    """act(BN(conv3x3(x + proj(t_emb)))): the time embedding is added before the conv."""

    def __init__(self, in_ch: int, out_ch: int, config: UNetConfig) -> None:
        super().__init__()
        self.time_proj = nn.Linear(config.time_dim, in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_ch) if config.batch_norm else nn.Identity()
        self.act: nn.Module = (
            nn.ReLU() if config.activation == "relu" else nn.LeakyReLU(config.negative_slope)
        )

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x + self.time_proj(t_emb)[:, :, None, None])))


class UNet(nn.Module):
    """ε-prediction U-Net, piecewise affine in its image input for a fixed time step.

    Parameters
    ----------
    config : UNetConfig, optional
        Architecture; the default is the published DAL-Test network.

    Notes
    -----
    ``forward(x, t)`` takes images (B, C, H, W) with H and W divisible by
    ``config.downsample_factor`` and integer steps ``t`` of shape (B,) or a scalar.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        cfg = self.config
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.time_dim, cfg.time_dim), nn.ReLU(), nn.Linear(cfg.time_dim, cfg.time_dim)
        )
        chans = cfg.channels
        self.down = nn.ModuleList()
        prev = cfg.in_channels
        for ch in chans:
            self.down.append(UNetBlock(prev, ch, cfg))
            prev = ch
        self.up = nn.ModuleList(
            UNetBlock(chans[i + 1] + chans[i], chans[i], cfg)
            for i in reversed(range(len(chans) - 1))
        )
        self.out = nn.Conv2d(chans[0], cfg.in_channels, kernel_size=1)

    def time_embedding(
        self, t: torch.Tensor | int, batch: int, device: torch.device
    ) -> torch.Tensor:
        """The shared time embedding MLP(sinusoid(t)), shape (batch, time_dim)."""
        t = torch.as_tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
        return self.time_mlp(timestep_embedding(t, self.config.time_dim).to(self.out.weight.dtype))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` for images this network cannot take."""
        cfg = self.config
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"model takes {cfg.in_channels} channel(s), got {x.shape[1]}")
        f = cfg.downsample_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"image size {tuple(x.shape[2:])} must be divisible by {f} "
                f"({len(cfg.channels) - 1} poolings)"
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        self.check_input(x)
        emb = self.time_embedding(t, x.shape[0], x.device)
        skips = []
        h = x
        for i, block in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            h = block(h, emb)
            skips.append(h)
        skips.pop()  # the bottleneck output is h itself
        for block in self.up:
            mode = self.config.upsample
            h = F.interpolate(
                h, scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None
            )
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
