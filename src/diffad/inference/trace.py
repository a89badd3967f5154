"""The seeded DDIM reconstruction and anomaly map traced along a line X(z) = a + b·z.

:class:`ReconstructionTracer` replays :func:`diffad.image.reconstruct.reconstruct` in float64
for many z at once and returns, for each z, the values and z-slopes of D(X(z)) and of the
filtered difference F = K ∗ (D(X) − X), together with the interval of z around it on which
every ReLU / LeakyReLU / max-pool decision inside the U-Net calls stays the same (so that
D and F are exactly affine there). Everything that does not depend on z is computed once
per tracer: the time-embedding MLP outputs, the time projections added before each conv
(as constant maps, so that zero padding is respected), eval-mode BatchNorm folded into the
conv weights, the DDIM coefficients and the fixed noise terms.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from diffad.diffusion.ddim import DDIMScheduler
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetBlock
from diffad.inference.affine import (
    avg_pool_pair,
    conv_pair,
    conv_pair_dense,
    conv_pair_shift,
    conv_pair_torch,
    dense_matrix,
    fold_conv_bn,
    max_pool_pair,
    mean_filter_pair,
    relu_pair,
    shift_weight,
    upsample_pair,
)

_SUPPORTED = (
    UNet,
    UNetBlock,
    nn.Sequential,
    nn.ModuleList,
    nn.Linear,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
)


def check_traceable(model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` is a U-Net the tracer can follow exactly.

    Every sub-module is checked up front, so an unsupported layer (GroupNorm, SiLU,
    attention, ...) is named instead of failing deep inside a trace.
    """
    if not isinstance(model, UNet):
        raise ValueError(
            "selective inference traces diffad.diffusion.unet.UNet models, "
            f"got {type(model).__name__}"
        )
    if model.training:
        raise ValueError("put the model in eval mode (BatchNorm must use its running statistics)")
    for name, module in model.named_modules():
        if not isinstance(module, _SUPPORTED):
            raise ValueError(
                f"unsupported layer {name or '<root>'!r} ({type(module).__name__}): the tracer "
                "handles conv, linear, ReLU/LeakyReLU, eval BatchNorm, pooling, up-sampling, "
                "concat and add only"
            )
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0]
            if (
                module.kernel_size != (k, k)
                or k % 2 == 0
                or module.stride != (1, 1)
                or module.dilation != (1, 1)
                or module.groups != 1
                or module.padding != (k // 2, k // 2)
                or module.padding_mode != "zeros"
            ):
                raise ValueError(
                    f"unsupported convolution {name!r}: need an odd square kernel, stride 1, "
                    "dilation 1, groups 1 and zero 'same' padding"
                )
    mode = pool_mode(model)
    if mode not in ("avg", "max"):
        raise ValueError(f"unsupported pooling {mode!r} in {type(model).__name__}")


def pool_mode(model: UNet) -> str:
    """'avg' for the published U-Net; a subclass may set ``pool_mode = "max"``."""
    return str(getattr(model, "pool_mode", getattr(model.config, "pool", "avg")))


@dataclass
class TraceResult:
    """Output of :meth:`ReconstructionTracer.evaluate` for points z_1..z_n.

    Attributes
    ----------
    z : numpy.ndarray
        Shape (n,), the points.
    lo, hi : numpy.ndarray
        Shape (n,), absolute ends of the interval around each z on which every network
        decision is constant (D and F are affine there).
    recon_value, recon_slope : numpy.ndarray
        Shape (n, C, H, W): D(X(z)) and its derivative in z.
    filt_value, filt_slope : numpy.ndarray
        Shape (n, C·H·W): the filtered difference F = K ∗ (D(X) − X) and its derivative.
    patterns : numpy.ndarray or None
        Shape (n, U), every network decision of each point (only when requested).
    """

    z: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    recon_value: np.ndarray
    recon_slope: np.ndarray
    filt_value: np.ndarray
    filt_slope: np.ndarray
    patterns: np.ndarray | None = None


class PrefixCache:
    """States after each DDIM call of recently traced points of one line, for reuse.

    The interval on which the first j network calls keep their decisions can be wider than
    the final piece. A new point inside the cumulative interval
    of the first j calls of a cached point starts at call j + 1 from that point's state
    moved along its (exact) slope, skipping j of the five U-Net evaluations. A ring buffer
    of ``capacity`` points; use one cache per line (a, b). ``calls_run`` counts the U-Net
    calls evaluated; without the cache it would be points × calls (with the synthetic-setting
    models the cache saves 19–23 % of the multiply-adds at 8×8 to 32×32, and resuming inside
    a call would save only ~3 % more: ``benchmarks/si_reuse_depth.py``).
    """

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = int(capacity)
        self.calls_run = 0
        self.size = 0
        self.next = 0
        self.z = np.zeros(self.capacity)
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None
        self.value: torch.Tensor | None = None
        self.slope: torch.Tensor | None = None

    def lookup(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each z: the number of leading calls it can skip and the cached point to use."""
        if self.size == 0 or self.lo is None:
            return np.zeros(len(z), dtype=np.int64), np.zeros(len(z), dtype=np.int64)
        lo, hi = self.lo[: self.size], self.hi[: self.size]
        inside = (lo[None] <= z[:, None, None]) & (z[:, None, None] <= hi[None])
        depth = np.cumprod(inside, axis=2).sum(axis=2)  # (n, R): leading calls contained
        best = depth.argmax(axis=1)
        return depth[np.arange(len(z)), best], best

    def add(self, z, lo, hi, value, slope) -> None:
        """Store points (z (n,), cumulative lo/hi (n, K), states (n, K, C, H, W))."""
        if self.lo is None:
            k = lo.shape[1]
            self.lo = np.zeros((self.capacity, k))
            self.hi = np.zeros((self.capacity, k))
            shape = (self.capacity, *value.shape[1:])
            self.value = torch.zeros(shape, dtype=value.dtype, device=value.device)
            self.slope = torch.zeros(shape, dtype=value.dtype, device=value.device)
        for i in range(len(z)):
            j = self.next
            self.z[j], self.lo[j], self.hi[j] = z[i], lo[i], hi[i]
            self.value[j], self.slope[j] = value[i], slope[i]
            self.next = (j + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)


class ReconstructionTracer:
    """Float64 replay of the seeded reconstruction for many points on a line at once.

    Parameters
    ----------
    model : UNet
        The ε-prediction network (eval mode); it is copied to float64, never modified.
    schedule : NoiseSchedule
        Its training schedule.
    timesteps : sequence of int
        The DDIM network-call steps, e.g. ``[460, 345, 230, 115, 0]``.
    noises : sequence of torch.Tensor
        From :func:`diffad.image.reconstruct.draw_reconstruction_noise` for one image,
        each of shape (1, C, H, W) or (C, H, W).
    eta : float
        DDIM stochasticity.
    filter_size : int
        Odd side of the mean filter applied to D(X) − X.
    device : torch.device or str, optional
        Where to compute (default: the model's device).
    memory_mb : float
        Rough cap on the largest intermediate per chunk of points.
    conv_impl : {"gemm", "torch"}
        ``"gemm"``: convolutions as large float64 GEMMs (fast); ``"torch"``: PyTorch's
        float64 ``conv2d`` (the straightforward reference, for speed comparisons).
    """

    def __init__(
        self,
        model: UNet,
        schedule: NoiseSchedule,
        timesteps: Sequence[int],
        noises: Sequence[torch.Tensor],
        eta: float = 1.0,
        filter_size: int = 3,
        device: torch.device | str | None = None,
        memory_mb: float = 256.0,
        conv_impl: str = "gemm",
    ) -> None:
        check_traceable(model)
        if conv_impl not in ("gemm", "torch"):
            raise ValueError(f"conv_impl must be 'gemm' or 'torch', got {conv_impl!r}")
        self.conv_impl = conv_impl
        if filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be a positive odd integer, got {filter_size}")
        steps = [int(t) for t in timesteps]
        if len(noises) != len(steps) + 1:
            raise ValueError(f"need {len(steps) + 1} noise tensors, got {len(noises)}")
        self.device = torch.device(device) if device is not None else model.out.weight.device
        self.filter_size = int(filter_size)
        self.timesteps = steps
        shape = tuple(noises[0].shape[-3:])
        model.check_input(torch.empty((1, *shape)))
        self.image_shape = shape
        net = copy.deepcopy(model).double().to(self.device).eval()
        cfg = net.config
        self.upsample = cfg.upsample
        self.pool = pool_mode(model)
        act = net.down[0].act
        self.negative_slope = float(act.negative_slope) if isinstance(act, nn.LeakyReLU) else 0.0
        noise = [
            torch.as_tensor(n_, dtype=torch.float64).to(self.device).reshape(shape) for n_ in noises
        ]
        ab = float(schedule.alpha_bars[steps[0]])
        self.in_scale = float(np.sqrt(ab))
        self.in_noise = float(np.sqrt(1.0 - ab)) * noise[0]
        ddim = DDIMScheduler(schedule, eta=eta)
        self.steps: list[dict] = []
        with torch.no_grad():
            sizes = self._level_sizes(shape[1:], len(cfg.channels))
            for i, t in enumerate(steps):
                t_prev = steps[i + 1] if i + 1 < len(steps) else -1
                c_x, c_eps, sigma, _ = ddim.coefficients(t, t_prev)
                emb = net.time_embedding(t, 1, self.device)
                down = [self._prepare_block(blk, emb, sizes[j]) for j, blk in enumerate(net.down)]
                up = [
                    self._prepare_block(blk, emb, sizes[len(sizes) - 2 - j])
                    for j, blk in enumerate(net.up)
                ]
                w_out, b_out = fold_conv_bn(net.out, None)
                self.steps.append(
                    {
                        "c_x": c_x,
                        "c_eps": c_eps,
                        "noise": sigma * noise[i + 1] if sigma > 0 else None,
                        "down": down,
                        "up": up,
                        "out": (w_out, b_out[:, None, None, None], net.out.kernel_size[0]),
                    }
                )
        # Bytes per point of the largest im2col matrix (values and slopes), to chunk points.
        widest = max(
            blk[4] * blk[3] ** 2 * h * w
            for st in self.steps[:1]
            for blk, (h, w) in self._walk(st, sizes)
        )
        self.max_points = max(1, int(memory_mb * 2**20 // (widest * 2 * 8 * 2)))

    @staticmethod
    def _level_sizes(hw: tuple[int, int], levels: int) -> list[tuple[int, int]]:
        h, w = hw
        return [(h >> j, w >> j) for j in range(levels)]

    def _walk(self, step: dict, sizes: list[tuple[int, int]]):
        for j, blk in enumerate(step["down"]):
            yield blk, sizes[j]
        for j, blk in enumerate(step["up"]):
            yield blk, sizes[len(sizes) - 2 - j]

    def _prepare_block(self, block: UNetBlock, emb: torch.Tensor, hw: tuple[int, int]) -> tuple:
        """Folded weight and the constant map conv(time_proj(emb)·1) + bias of one block."""
        weight, bias = fold_conv_bn(block.conv, block.norm)
        k = block.conv.kernel_size[0]
        c_in = block.conv.in_channels
        shift = block.time_proj(emb)[0]  # (C_in,)
        # conv(x + c) = conv(x) + conv(c·1): the constant sees the same zero padding as x.
        ones = shift[None, :, None, None].expand(1, c_in, *hw)
        const = F.conv2d(ones, weight.reshape(-1, c_in, k, k), bias, padding=k // 2)[0]
        const = const[:, None].contiguous()
        c_out = weight.shape[0]
        h, w = hw
        # Pick the cheapest exact evaluation of this conv (see diffad.inference.affine). The
        # weights are the same at every time step: build each form once per block.
        memo = self.__dict__.setdefault("_weight_memo", {})
        key = id(block)
        if key not in memo:
            if h * w < k * k:
                memo[key] = ("dense", dense_matrix(weight, c_in, k, hw))
            elif c_out < c_in:
                memo[key] = ("shift", shift_weight(weight, c_in, k))
            else:
                memo[key] = ("im2col", weight)
        kind, mat = memo[key]
        return (kind, mat, const, k, c_in, weight)

    def _block(self, state, blk, n, lo, hi, patterns):
        kind, weight, const, k = blk[:4]
        if self.conv_impl == "torch":
            return relu_pair(
                conv_pair_torch(state, blk[5], k, n, const),
                n, lo, hi, self.negative_slope, patterns,
            )  # fmt: skip
        if kind == "dense":
            state = conv_pair_dense(state, weight, n, const)
        elif kind == "shift":
            state = conv_pair_shift(state, weight, k, n, const)
        else:
            state = conv_pair(state, weight, k, n, const)
        return relu_pair(state, n, lo, hi, self.negative_slope, patterns)

    def _unet(self, state, step, n, lo, hi, patterns):
        skips = []
        for j, blk in enumerate(step["down"]):
            if j > 0:
                if self.pool == "max":
                    state = max_pool_pair(state, n, lo, hi, patterns)
                else:
                    state = avg_pool_pair(state)
            state = self._block(state, blk, n, lo, hi, patterns)
            skips.append(state)
        skips.pop()
        for blk in step["up"]:
            state = upsample_pair(state, self.upsample)
            state = torch.cat([state, skips.pop()], dim=0)
            state = self._block(state, blk, n, lo, hi, patterns)
        weight, bias, k = step["out"]
        return conv_pair(state, weight, k, n, bias)

    def _evaluate_chunk(self, a, b, z, want_patterns):
        n = z.shape[0]
        c = self.image_shape[0]
        x = torch.empty((c, 2 * n, *self.image_shape[1:]), dtype=torch.float64, device=self.device)
        x[:, :n] = a[:, None] + b[:, None] * z[None, :, None, None]
        x[:, n:] = b[:, None]
        return self._run(x, n, want_patterns)

    def _run(self, x, n, want_patterns):
        lo = torch.full((n,), -float("inf"), dtype=torch.float64, device=self.device)
        hi = torch.full((n,), float("inf"), dtype=torch.float64, device=self.device)
        patterns: list | None = [] if want_patterns else None
        state = self.in_scale * x
        state[:, :n] += self.in_noise[:, None]
        for step in self.steps:
            eps = self._unet(state, step, n, lo, hi, patterns)
            state = step["c_x"] * state + step["c_eps"] * eps
            if step["noise"] is not None:
                state[:, :n] += step["noise"][:, None]
        filt = mean_filter_pair(state - x, self.filter_size)
        recon = state.transpose(0, 1)
        filt = filt.transpose(0, 1).reshape(2 * n, -1)
        pat = None
        if patterns is not None:
            pat = torch.cat([p.transpose(0, 1).reshape(n, -1).to(torch.int64) for p in patterns], 1)
        return lo, hi, recon[:n], recon[n:], filt[:n], filt[n:], pat

    def _run_cached(self, a, b, z, cache: PrefixCache):
        """Like :meth:`_run` on the line, starting each point at its first uncached call."""
        n, steps = z.shape[0], len(self.steps)
        zn = z.cpu().numpy()
        skip, rec = cache.lookup(zn)
        skip = np.minimum(skip, steps - 1)
        cache.calls_run += int(np.sum(steps - skip))
        c, h, w = self.image_shape
        dev, f64 = self.device, torch.float64
        rec_lo = np.full((n, steps - 1), -np.inf)
        rec_hi = np.full((n, steps - 1), np.inf)
        rec_v = torch.empty((n, steps - 1, c, h, w), dtype=f64, device=dev)
        rec_s = torch.empty((n, steps - 1, c, h, w), dtype=f64, device=dev)
        val = torch.empty((c, 0, h, w), dtype=f64, device=dev)
        slo = torch.empty((c, 0, h, w), dtype=f64, device=dev)
        lo = torch.empty(0, dtype=f64, device=dev)
        hi = torch.empty(0, dtype=f64, device=dev)
        order: list[int] = []
        for k, step in enumerate(self.steps):
            enter = np.flatnonzero(skip == k)
            if enter.size:
                ze = z[enter]
                if k == 0:
                    v0 = self.in_scale * (a[:, None] + b[:, None] * ze[None, :, None, None])
                    v0 = v0 + self.in_noise[:, None]
                    s0 = (self.in_scale * b)[:, None].expand(c, enter.size, h, w)
                    lo0 = torch.full((enter.size,), -float("inf"), dtype=f64, device=dev)
                    hi0 = torch.full((enter.size,), float("inf"), dtype=f64, device=dev)
                else:
                    r = rec[enter]
                    dz = torch.as_tensor(zn[enter] - cache.z[r], dtype=f64, device=dev)
                    rv, rs = cache.value[r][:, :k], cache.slope[r][:, :k]
                    moved = rv + rs * dz[:, None, None, None, None]
                    rec_v[enter, :k], rec_s[enter, :k] = moved, rs
                    rec_lo[enter, :k], rec_hi[enter, :k] = cache.lo[r, :k], cache.hi[r, :k]
                    v0 = moved[:, k - 1].transpose(0, 1)
                    s0 = rs[:, k - 1].transpose(0, 1)
                    lo0 = torch.as_tensor(cache.lo[r, k - 1] - zn[enter], dtype=f64, device=dev)
                    hi0 = torch.as_tensor(cache.hi[r, k - 1] - zn[enter], dtype=f64, device=dev)
                val, slo = torch.cat([val, v0], 1), torch.cat([slo, s0], 1)
                lo, hi = torch.cat([lo, lo0]), torch.cat([hi, hi0])
                order.extend(enter.tolist())
            m = len(order)
            if m == 0:  # every point resumes later
                continue
            state = torch.cat([val, slo], 1)
            eps = self._unet(state, step, m, lo, hi, None)
            state = step["c_x"] * state + step["c_eps"] * eps
            if step["noise"] is not None:
                state[:, :m] += step["noise"][:, None]
            val, slo = state[:, :m], state[:, m:]
            if k < steps - 1:
                idx = np.asarray(order)
                rec_lo[idx, k] = zn[idx] + lo.cpu().numpy()
                rec_hi[idx, k] = zn[idx] + hi.cpu().numpy()
                rec_v[idx, k], rec_s[idx, k] = val.transpose(0, 1), slo.transpose(0, 1)
        inv = torch.as_tensor(np.argsort(np.asarray(order)), device=dev)
        val, slo, lo, hi = val[:, inv], slo[:, inv], lo[inv], hi[inv]
        cache.add(zn, rec_lo, rec_hi, rec_v, rec_s)
        xv = a[:, None] + b[:, None] * z[None, :, None, None]
        diff = torch.cat([val - xv, slo - b[:, None]], 1)
        filt = mean_filter_pair(diff, self.filter_size).transpose(0, 1).reshape(2 * n, -1)
        return lo, hi, val.transpose(0, 1), slo.transpose(0, 1), filt[:n], filt[n:], None

    def evaluate(
        self,
        a: np.ndarray,
        b: np.ndarray,
        z: np.ndarray | Sequence[float],
        patterns: bool = False,
        cache: PrefixCache | None = None,
    ) -> TraceResult:
        """Trace D and F at points ``z`` of the line X(z) = a + b·z.

        Parameters
        ----------
        a, b : numpy.ndarray
            The line in image space, each of shape (C, H, W) (or flat C·H·W).
        z : array-like
            Points, shape (n,).
        patterns : bool
            Also return every network decision (for tests; not with ``cache``).
        cache : PrefixCache, optional
            Reuse the first network calls of earlier points of the *same* line.

        Returns
        -------
        TraceResult
        """
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        at = torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device)
        bt = torch.as_tensor(np.asarray(b, dtype=np.float64), device=self.device)
        at, bt = at.reshape(self.image_shape), bt.reshape(self.image_shape)
        parts = []
        with torch.no_grad():
            for start in range(0, z.size, self.max_points):
                zt = torch.as_tensor(z[start : start + self.max_points], device=self.device)
                if cache is not None and not patterns:
                    parts.append(self._run_cached(at, bt, zt, cache))
                else:
                    parts.append(self._evaluate_chunk(at, bt, zt, patterns))
        cat = [
            None if parts[0][i] is None else torch.cat([p[i] for p in parts]).cpu().numpy()
            for i in range(7)
        ]
        lo, hi = z + cat[0], z + cat[1]
        return TraceResult(z, lo, hi, cat[2], cat[3], cat[4], cat[5], cat[6])

    def filtered_difference(self, images: np.ndarray) -> np.ndarray:
        """F = K ∗ (D(X) − X) for a batch of images (B, C, H, W) → (B, C·H·W), float64.

        The same seeded reconstruction as along the line (the noise is fixed per tracer).
        """
        images = np.asarray(images, dtype=np.float64).reshape(-1, *self.image_shape)
        outs = []
        with torch.no_grad():
            for start in range(0, len(images), self.max_points):
                chunk = torch.as_tensor(images[start : start + self.max_points], device=self.device)
                n = chunk.shape[0]
                x = torch.zeros(
                    (self.image_shape[0], 2 * n, *self.image_shape[1:]),
                    dtype=torch.float64,
                    device=self.device,
                )
                x[:, :n] = chunk.transpose(0, 1)
                outs.append(self._run(x, n, False)[4])
        return torch.cat(outs).cpu().numpy()
