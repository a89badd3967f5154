"""The seeded reconstruction and its filtered difference traced along a line X(z) = a + b·z.

:class:`ReconstructionTracer` replays a :class:`~diffad.diffusion.chain.ReconstructionChain`
in float64 for many z at once and returns, for each z, the values and z-slopes of D(X(z))
and of the filtered difference F = K ∗ (D(X) − X), together with the interval of z around
it on which every ReLU / LeakyReLU decision inside the U-Net calls stays the same (so that
D and F are exactly affine there). Everything that does not depend on z is computed once
per tracer: the time-embedding MLP outputs, the time projections added before each conv
(as constant maps, so that zero padding is respected), eval-mode BatchNorm folded into the
conv weights, and the chain's constants and fixed noise terms.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from diffad.diffusion.chain import ReconstructionChain
from diffad.diffusion.unet import UNet, UNetBlock
from diffad.image.region_maps import mean_filter
from diffad.selective.affine import (
    avg_pool_pair,
    conv_pair,
    conv_pair_dense,
    conv_pair_shift,
    dense_matrix,
    fold_conv_bn,
    relu_pair,
    shift_weight,
    upsample_pair,
)
from diffad.selective.intervals import oc_interval, selection_intervals
from diffad.selective.prefix_cache import PrefixCache

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
    if type(model) is not UNet:
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
                "handles conv, linear, ReLU/LeakyReLU, eval BatchNorm, average pooling, "
                "up-sampling, concat and add only"
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


@dataclass(eq=False)
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


@dataclass(eq=False)
class _TracedStep:
    """One chain step with the network folded for tracing."""

    c_x: float
    c_eps: float
    noise: torch.Tensor | None  # σ·n, added to the values only
    down: list[tuple]
    up: list[tuple]
    out: tuple[torch.Tensor, torch.Tensor, int]


class ReconstructionTracer:
    """Float64 replay of the seeded reconstruction for many points on a line at once.

    Parameters
    ----------
    model : UNet
        The ε-prediction network (eval mode); it is copied to float64, never modified.
    chain : ReconstructionChain
        The reconstruction to replay (``DDPMLocalizer.chain()``).
    noises : sequence of torch.Tensor
        From ``chain.draw_noise`` for one image, each of shape (1, C, H, W) or (C, H, W).
    filter_size : int
        Odd side of the mean filter applied to D(X) − X.
    device : torch.device or str, optional
        Where to compute (default: the model's device).
    memory_mb : float
        Rough cap on the largest intermediate per chunk of points.
    """

    def __init__(
        self,
        model: UNet,
        chain: ReconstructionChain,
        noises: Sequence[torch.Tensor],
        filter_size: int = 3,
        device: torch.device | str | None = None,
        memory_mb: float = 256.0,
    ) -> None:
        check_traceable(model)
        if filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be a positive odd integer, got {filter_size}")
        if len(noises) != chain.n_noises:
            raise ValueError(f"need {chain.n_noises} noise tensors, got {len(noises)}")
        self.device = torch.device(device) if device is not None else model.out.weight.device
        self.filter_size = int(filter_size)
        self.chain = chain
        shape = tuple(noises[0].shape[-3:])
        model.check_input(torch.empty((1, *shape)))
        self.image_shape = shape
        net = copy.deepcopy(model).double().to(self.device).eval()
        self.upsample = net.config.upsample
        act = net.down[0].act
        self.negative_slope = float(act.negative_slope) if isinstance(act, nn.LeakyReLU) else 0.0
        noise = [
            torch.as_tensor(n_, dtype=torch.float64).to(self.device).reshape(shape) for n_ in noises
        ]
        self.in_scale = chain.in_scale
        self.in_noise = chain.in_noise_scale * noise[0]
        sizes = [(shape[1] >> j, shape[2] >> j) for j in range(len(net.config.channels))]
        self._weight_forms: dict[int, tuple[str, torch.Tensor]] = {}
        with torch.no_grad():
            self.steps = [
                self._prepare_step(net, step, noise[i + 1], sizes)
                for i, step in enumerate(chain.steps)
            ]
        # Bytes per point of the largest im2col matrix (values and slopes), to chunk points.
        widest = max(
            blk[4] * blk[3] ** 2 * h * w for blk, (h, w) in self._walk(self.steps[0], sizes)
        )
        self.max_points = max(1, int(memory_mb * 2**20 // (widest * 2 * 8 * 2)))

    # ------------------------------------------------------------------ set-up
    def _prepare_step(self, net: UNet, step, noise: torch.Tensor, sizes) -> _TracedStep:
        emb = net.time_embedding(step.t, 1, self.device)
        down = [self._prepare_block(blk, emb, sizes[j]) for j, blk in enumerate(net.down)]
        up = [
            self._prepare_block(blk, emb, sizes[len(sizes) - 2 - j]) for j, blk in enumerate(net.up)
        ]
        w_out, b_out = fold_conv_bn(net.out, None)
        return _TracedStep(
            c_x=step.c_x,
            c_eps=step.c_eps,
            noise=step.sigma * noise if step.sigma > 0 else None,
            down=down,
            up=up,
            out=(w_out, b_out[:, None, None, None], net.out.kernel_size[0]),
        )

    @staticmethod
    def _walk(step: _TracedStep, sizes: list[tuple[int, int]]):
        for j, blk in enumerate(step.down):
            yield blk, sizes[j]
        for j, blk in enumerate(step.up):
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
        # Pick the cheapest exact evaluation of this conv (see diffad.selective.affine). The
        # weights are the same at every time step: build each form once per block.
        key = id(block)
        if key not in self._weight_forms:
            if h * w < k * k:
                self._weight_forms[key] = ("dense", dense_matrix(weight, c_in, k, hw))
            elif c_out < c_in:
                self._weight_forms[key] = ("shift", shift_weight(weight, c_in, k))
            else:
                self._weight_forms[key] = ("im2col", weight)
        kind, mat = self._weight_forms[key]
        return (kind, mat, const, k, c_in)

    # ------------------------------------------------------------------ one network call
    def _block(self, state, blk, n, lo, hi, patterns):
        kind, weight, const, k = blk[:4]
        if kind == "dense":
            state = conv_pair_dense(state, weight, n, const)
        elif kind == "shift":
            state = conv_pair_shift(state, weight, k, n, const)
        else:
            state = conv_pair(state, weight, k, n, const)
        return relu_pair(state, n, lo, hi, self.negative_slope, patterns)

    def _unet(self, state, step: _TracedStep, n, lo, hi, patterns):
        skips = []
        for j, blk in enumerate(step.down):
            if j > 0:
                state = avg_pool_pair(state)
            state = self._block(state, blk, n, lo, hi, patterns)
            skips.append(state)
        skips.pop()
        for blk in step.up:
            state = upsample_pair(state, self.upsample)
            state = torch.cat([state, skips.pop()], dim=0)
            state = self._block(state, blk, n, lo, hi, patterns)
        weight, bias, k = step.out
        return conv_pair(state, weight, k, n, bias)

    def _apply_step(self, state, step: _TracedStep, n, lo, hi, patterns):
        """x ← c_x·x + c_eps·ε̂(x) + σ·n on a (C, 2n, H, W) state of values and slopes."""
        eps = self._unet(state, step, n, lo, hi, patterns)
        state = step.c_x * state + step.c_eps * eps
        if step.noise is not None:
            state[:, :n] += step.noise[:, None]
        return state

    # ------------------------------------------------------------------ whole chain
    def _run(self, x, n, want_patterns):
        lo = torch.full((n,), -float("inf"), dtype=torch.float64, device=self.device)
        hi = torch.full((n,), float("inf"), dtype=torch.float64, device=self.device)
        patterns: list | None = [] if want_patterns else None
        state = self.in_scale * x
        state[:, :n] += self.in_noise[:, None]
        for step in self.steps:
            state = self._apply_step(state, step, n, lo, hi, patterns)
        filt = mean_filter(state - x, self.filter_size)
        recon = state.transpose(0, 1)
        filt = filt.transpose(0, 1).reshape(2 * n, -1)
        pat = None
        if patterns is not None:
            pat = torch.cat([p.transpose(0, 1).reshape(n, -1).to(torch.int64) for p in patterns], 1)
        return lo, hi, recon[:n], recon[n:], filt[:n], filt[n:], pat

    def _evaluate_chunk(self, a, b, z, want_patterns):
        n = z.shape[0]
        c = self.image_shape[0]
        x = torch.empty((c, 2 * n, *self.image_shape[1:]), dtype=torch.float64, device=self.device)
        x[:, :n] = a[:, None] + b[:, None] * z[None, :, None, None]
        x[:, n:] = b[:, None]
        return self._run(x, n, want_patterns)

    def _run_cached(self, a, b, z, cache: PrefixCache):
        """Like :meth:`_run` on the line, starting each point at its first uncached call."""
        n, n_calls = z.shape[0], len(self.steps)
        zn = z.cpu().numpy()
        skip, rec = cache.lookup(zn)
        skip = np.minimum(skip, n_calls - 1)
        cache.calls_run += int(np.sum(n_calls - skip))
        c, h, w = self.image_shape
        dev, f64 = self.device, torch.float64
        # What the cache stores of each point: interval and state after each call but the last.
        rec_lo = np.full((n, n_calls - 1), -np.inf)
        rec_hi = np.full((n, n_calls - 1), np.inf)
        rec_v = torch.empty((n, n_calls - 1, c, h, w), dtype=f64, device=dev)
        rec_s = torch.empty((n, n_calls - 1, c, h, w), dtype=f64, device=dev)
        val = torch.empty((c, 0, h, w), dtype=f64, device=dev)
        slo = torch.empty((c, 0, h, w), dtype=f64, device=dev)
        lo = torch.empty(0, dtype=f64, device=dev)
        hi = torch.empty(0, dtype=f64, device=dev)
        order: list[int] = []
        for k, step in enumerate(self.steps):
            enter = np.flatnonzero(skip == k)
            if enter.size:
                v0, s0, lo0, hi0 = self._entry_states(a, b, z, zn, enter, k, cache, rec, rec_v,
                                                      rec_s, rec_lo, rec_hi)  # fmt: skip
                val, slo = torch.cat([val, v0], 1), torch.cat([slo, s0], 1)
                lo, hi = torch.cat([lo, lo0]), torch.cat([hi, hi0])
                order.extend(enter.tolist())
            m = len(order)
            if m == 0:  # every point resumes later
                continue
            state = self._apply_step(torch.cat([val, slo], 1), step, m, lo, hi, None)
            val, slo = state[:, :m], state[:, m:]
            if k < n_calls - 1:
                idx = np.asarray(order)
                rec_lo[idx, k] = zn[idx] + lo.cpu().numpy()
                rec_hi[idx, k] = zn[idx] + hi.cpu().numpy()
                rec_v[idx, k], rec_s[idx, k] = val.transpose(0, 1), slo.transpose(0, 1)
        inv = torch.as_tensor(np.argsort(np.asarray(order)), device=dev)
        val, slo, lo, hi = val[:, inv], slo[:, inv], lo[inv], hi[inv]
        cache.add(zn, rec_lo, rec_hi, rec_v, rec_s)
        xv = a[:, None] + b[:, None] * z[None, :, None, None]
        diff = torch.cat([val - xv, slo - b[:, None]], 1)
        filt = mean_filter(diff, self.filter_size).transpose(0, 1).reshape(2 * n, -1)
        return lo, hi, val.transpose(0, 1), slo.transpose(0, 1), filt[:n], filt[n:], None

    def _entry_states(self, a, b, z, zn, enter, k, cache, rec, rec_v, rec_s, rec_lo, rec_hi):
        """States, slopes and relative intervals of the points that start at call ``k``:
        the noised line for k = 0, else a cached point's state moved along its slope."""
        c, h, w = self.image_shape
        dev, f64 = self.device, torch.float64
        ze = z[enter]
        if k == 0:
            v0 = self.in_scale * (a[:, None] + b[:, None] * ze[None, :, None, None])
            v0 = v0 + self.in_noise[:, None]
            s0 = (self.in_scale * b)[:, None].expand(c, enter.size, h, w)
            lo0 = torch.full((enter.size,), -float("inf"), dtype=f64, device=dev)
            hi0 = torch.full((enter.size,), float("inf"), dtype=f64, device=dev)
            return v0, s0, lo0, hi0
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
        return v0, s0, lo0, hi0

    # ------------------------------------------------------------------ public
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

    # ------------------------------------------------------------------ the region test's map
    @property
    def calls_per_point(self) -> int:
        """Network calls one traced point costs."""
        return len(self.steps)

    def new_cache(self) -> PrefixCache:
        """A fresh cache for the points of one line (see :meth:`evaluate`)."""
        return PrefixCache()

    def selection_map(self, images: np.ndarray) -> np.ndarray:
        """The map the region test thresholds at λ, |F| = |K ∗ (D(X) − X)|, (B, C·H·W)."""
        return np.abs(self.filtered_difference(images))

    def piece_selector(
        self,
        a: np.ndarray,
        b: np.ndarray,
        z_obs: float,
        lam: float,
        m_obs: np.ndarray,
        cache: PrefixCache | None = None,
    ) -> Callable[[np.ndarray], list]:
        """``evaluate(zs)`` for the parametric search: for each point its piece (lo, hi) and
        the sub-intervals of the piece on which the selection equals ``m_obs`` (``z_obs``,
        the observed point, is not needed here: the selection depends on F only)."""

        def evaluate(zs: np.ndarray) -> list:
            tr = self.evaluate(a, b, zs, cache=cache)
            return [
                (
                    float(tr.lo[k]),
                    float(tr.hi[k]),
                    selection_intervals(
                        zs[k], tr.lo[k], tr.hi[k], tr.filt_value[k], tr.filt_slope[k], lam, m_obs
                    ),
                )
                for k in range(len(zs))
            ]

        return evaluate

    def oc_interval(
        self, a: np.ndarray, b: np.ndarray, z: float, lam: float
    ) -> tuple[float, float]:
        """The over-conditioned interval around ``z``: every network decision, every sign of
        F and every comparison with ±λ held fixed."""
        tr = self.evaluate(a, b, [z])
        return oc_interval(z, tr.lo[0], tr.hi[0], tr.filt_value[0], tr.filt_slope[0], lam)
