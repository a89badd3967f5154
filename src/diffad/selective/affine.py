"""Per-layer rules for tensors that are affine in a scalar z, evaluated at many z at once.

A batch of ``n`` points z_1..z_n on the line X(z) = a + b·z is carried as one float64
tensor of shape (C, 2n, H, W): columns ``[:n]`` hold the values at each z_k and columns
``[n:]`` hold the slopes d/dz. Linear layers act on both halves (biases and constants only
on the values); a piecewise-linear layer picks its branch from the values and applies the
same branch to the slopes. Every branch decision v + s·(z' − z_k) of unit i stays on its
side for offsets z' − z_k in (lo_k, hi_k), which the rules shrink in place.

The layout is channels-first on purpose: a 3×3 convolution then is one GEMM
(C_out × 9·C_in) @ (9·C_in × 2n·H·W) over every point and position at once, where PyTorch's
float64 ``conv2d`` (no oneDNN path) would loop over tiny per-sample GEMMs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_REDUCE = (0, 2, 3)  # every dim except the point dim of a (C, n, H, W) half


def shrink_interval(
    value: torch.Tensor, slope: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> None:
    """Shrink (lo, hi) so that no ``value + slope·dz`` changes sign for dz in (lo, hi).

    Parameters
    ----------
    value, slope : torch.Tensor
        Shape (C, n, H, W): decision functions at each point and their z-derivatives.
    lo, hi : torch.Tensor
        Shape (n,), offsets relative to each point (lo <= 0 <= hi); updated in place.

    Notes
    -----
    A unit changes sign at dz = −value/slope = −1/q with q = slope/value, so the nearest
    root on the right is 1/(−min q) when min q < 0 and the nearest on the left is −1/max q
    when max q > 0. That is one element-wise pass and two reductions over the units; the
    rest is done on the (n,) vectors. Units with value 0 give 0/0 or ±inf; both are
    dropped, as a point exactly on a switch has no side to keep (the search never places
    points there: it steps past piece ends).
    """
    q = slope / value
    q.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    q_min, q_max = q.amin(dim=_REDUCE), q.amax(dim=_REDUCE)
    up = torch.where(q_min < 0, -1.0 / q_min, torch.inf)
    down = torch.where(q_max > 0, -1.0 / q_max, -torch.inf)
    torch.minimum(hi, up, out=hi)
    torch.maximum(lo, down, out=lo)


def fold_conv_bn(conv: nn.Conv2d, norm: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv followed by eval-mode BatchNorm as one (C_out, C_in·k·k) matrix and a bias.

    Returns float64 tensors on the conv's device.
    """
    w = conv.weight.detach().double()
    bias = (
        conv.bias.detach().double()
        if conv.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    )
    if isinstance(norm, nn.BatchNorm2d):
        scale = norm.weight.detach().double() if norm.affine else torch.ones_like(bias)
        shift = norm.bias.detach().double() if norm.affine else torch.zeros_like(bias)
        inv = scale / torch.sqrt(norm.running_var.detach().double() + norm.eps)
        w = w * inv[:, None, None, None]
        bias = (bias - norm.running_mean.detach().double()) * inv + shift
    return w.reshape(w.shape[0], -1).contiguous(), bias


def conv_pair(
    state: torch.Tensor, weight: torch.Tensor, kernel: int, n: int, const: torch.Tensor
) -> torch.Tensor:
    """Stride-1 'same' convolution of a (C, 2n, H, W) state as one GEMM.

    Parameters
    ----------
    state : torch.Tensor
        Values and slopes, shape (C_in, 2n, H, W).
    weight : torch.Tensor
        (C_out, C_in·kernel²) from :func:`fold_conv_bn`.
    kernel : int
        Odd kernel size (zero padding kernel // 2).
    n : int
        Number of points.
    const : torch.Tensor
        Added to the values only; broadcastable to (C_out, 1, H, W) (bias, or a full
        constant map when a constant was added to the input before zero padding).
    """
    c_in, b2, h, w = state.shape
    if kernel == 1:
        cols = state.reshape(c_in, -1)
    else:
        pad = kernel // 2
        padded = F.pad(state, (pad, pad, pad, pad))
        # (C_in, k*k, 2n, H, W): the row order c*k*k + dy*k + dx matches weight.reshape.
        cols = torch.stack(
            [
                padded[:, :, dy : dy + h, dx : dx + w]
                for dy in range(kernel)
                for dx in range(kernel)
            ],
            dim=1,
        ).reshape(c_in * kernel * kernel, -1)
    out = (weight @ cols).reshape(weight.shape[0], b2, h, w)
    out[:, :n] += const
    return out


def relu_pair(
    state: torch.Tensor,
    n: int,
    lo: torch.Tensor,
    hi: torch.Tensor,
    negative_slope: float = 0.0,
    patterns: list | None = None,
) -> torch.Tensor:
    """ReLU (or LeakyReLU) with its sign decisions recorded in (lo, hi); in place."""
    value, slope = state[:, :n], state[:, n:]
    shrink_interval(value, slope, lo, hi)
    pos = value > 0
    if patterns is not None:
        patterns.append(~pos)
    if negative_slope == 0.0:
        factor = pos.to(state.dtype)
    else:
        # Built in the state's dtype: a float32 0.01 would differ from LeakyReLU's by 2e-10.
        one = torch.ones((), dtype=state.dtype, device=state.device)
        factor = torch.where(pos, one, one * negative_slope)
    # Values and slopes take the same branch: one multiply over both halves.
    c, _, h, w = state.shape
    state.view(c, 2, n, h, w).mul_(factor[:, None])
    return state


def avg_pool_pair(state: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling (linear)."""
    return F.avg_pool2d(state, 2)


def upsample_pair(state: torch.Tensor, mode: str) -> torch.Tensor:
    """×2 nearest or bilinear (align_corners=False) up-sampling (linear)."""
    if mode == "bilinear":
        return F.interpolate(state, scale_factor=2, mode="bilinear", align_corners=False)
    return F.interpolate(state, scale_factor=2, mode="nearest")


def shift_weight(weight: torch.Tensor, c_in: int, kernel: int) -> torch.Tensor:
    """(C_out, C_in·k²) → (k²·C_out, C_in): one row block per tap, for :func:`conv_pair_shift`."""
    c_out = weight.shape[0]
    w = weight.reshape(c_out, c_in, kernel, kernel).permute(2, 3, 0, 1)
    return w.reshape(kernel * kernel * c_out, c_in).contiguous()


def conv_pair_shift(
    state: torch.Tensor, weight9: torch.Tensor, kernel: int, n: int, const: torch.Tensor
) -> torch.Tensor:
    """Same result as :func:`conv_pair`, as one GEMM per layer followed by shifted adds.

    All taps are applied to the unshifted input at once, (k²·C_out × C_in) @ (C_in × 2n·H·W),
    and the k² partial outputs are added with their spatial offsets. No im2col copy of the
    input is made, so this moves less memory when C_out < C_in (the decoder blocks).
    """
    c_in, b2, h, w = state.shape
    c_out = weight9.shape[0] // (kernel * kernel)
    y = (weight9 @ state.reshape(c_in, -1)).reshape(kernel, kernel, c_out, b2, h, w)
    p = kernel // 2
    out = y[p, p].clone()
    for dy in range(kernel):
        oy = dy - p
        if abs(oy) >= h:
            continue
        for dx in range(kernel):
            ox = dx - p
            if (oy == 0 and ox == 0) or abs(ox) >= w:
                continue
            # out[y, x] += Y_tap[y + oy, x + ox] wherever that input pixel exists.
            out[:, :, max(0, -oy) : h - max(0, oy), max(0, -ox) : w - max(0, ox)] += y[dy, dx][
                :, :, max(0, oy) : h - max(0, -oy), max(0, ox) : w - max(0, -ox)
            ]
    out[:, :n] += const
    return out


def dense_matrix(weight: torch.Tensor, c_in: int, kernel: int, hw: tuple[int, int]) -> torch.Tensor:
    """The zero-padded conv on an H×W map as a dense (C_out·H·W, C_in·H·W) matrix.

    Cheaper than im2col when H·W < k² (the deepest levels of small images, where most
    taps fall on padding). Built by placing each tap's (C_out, C_in) weight block at every
    (output pixel, input pixel) pair it connects, which is far cheaper than a float64
    ``conv2d`` of an identity basis.
    """
    h, w = hw
    c_out = weight.shape[0]
    kern = weight.reshape(c_out, c_in, kernel, kernel)
    p = kernel // 2
    dense = weight.new_zeros((c_out, h, w, c_in, h, w))
    for oy in range(h):
        for ox in range(w):
            for iy in range(max(0, oy - p), min(h, oy + p + 1)):
                for ix in range(max(0, ox - p), min(w, ox + p + 1)):
                    # out[o, oy, ox] += W[o, i, iy − oy + p, ix − ox + p] · in[i, iy, ix]
                    dense[:, oy, ox, :, iy, ix] = kern[:, :, iy - oy + p, ix - ox + p]
    return dense.reshape(c_out * h * w, c_in * h * w)


def conv_pair_dense(
    state: torch.Tensor, matrix: torch.Tensor, n: int, const: torch.Tensor
) -> torch.Tensor:
    """Same result as :func:`conv_pair` with a matrix from :func:`dense_matrix`."""
    c_in, b2, h, w = state.shape
    flat = state.permute(0, 2, 3, 1).reshape(c_in * h * w, b2)
    out = (matrix @ flat).reshape(-1, h, w, b2).permute(0, 3, 1, 2).contiguous()
    out[:, :n] += const
    return out
