"""Sinusoidal embedding of diffusion time steps, shared by every time-conditioned network."""

from __future__ import annotations

import math

import torch


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    max_period: float = 10_000.0,
) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (possibly fractional) time steps.

    With ``half = dim // 2`` geometrically spaced frequencies f_j = max_period^(−j/half), the
    embedding of t is ``[sin(t·f), cos(t·f)]`` (or ``[cos(t·f), sin(t·f)]`` with
    ``flip_sin_to_cos``, the convention of ``diffusers.models.embeddings``); an odd ``dim``
    gets one trailing zero.

    Parameters
    ----------
    t : torch.Tensor
        Time steps, shape (batch,).
    dim : int
        Embedding width (>= 1).
    flip_sin_to_cos : bool
        Put the cosines first.
    max_period : float
        Longest period of the sinusoids.

    Returns
    -------
    torch.Tensor
        Shape (batch, dim), float32.
    """
    if dim < 1:
        raise ValueError(f"embedding dim must be >= 1, got {dim}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None, :]
    parts = (
        [torch.cos(args), torch.sin(args)]
        if flip_sin_to_cos
        else [torch.sin(args), torch.cos(args)]
    )
    emb = torch.cat(parts, dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
