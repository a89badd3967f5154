"""Exactness of the float64 affine tracer against the direct float64 reconstruction."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from diffad.diffusion.chain import ReconstructionChain, draw_reconstruction_noise, reconstruct
from diffad.diffusion.ddim import ddim_timesteps
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.selective.affine import dense_matrix, shrink_interval
from diffad.selective.tracer import ReconstructionTracer, check_traceable

D = 8
SCHEDULE = NoiseSchedule.linear(1000)
STEPS = ddim_timesteps(460, 5)
CHAIN = ReconstructionChain.ddim(SCHEDULE, STEPS)


def _random_net(seed: int = 0, **cfg) -> UNet:
    torch.manual_seed(seed)
    net = UNet(UNetConfig(channels=[4, 8], **cfg))
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):  # non-trivial running statistics
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


VARIANTS = {
    "relu-bilinear": lambda: _random_net(),
    "leaky-nearest": lambda: _random_net(activation="leaky_relu", upsample="nearest", seed=1),
    "three-levels": lambda: UNet(UNetConfig(channels=[4, 8, 8])).eval(),
}


def _direct(net: UNet, x: np.ndarray, noises) -> np.ndarray:
    with torch.no_grad():
        return reconstruct(net, SCHEDULE, torch.from_numpy(x)[None], STEPS, noises, 1.0)[0].numpy()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_affine_form_equals_direct_forward_inside_interval(variant):
    net = VARIANTS[variant]()
    noises = draw_reconstruction_noise((1, 1, D, D), STEPS, seed=3, dtype=torch.float64)
    tracer = ReconstructionTracer(net, CHAIN, noises)
    net64 = copy.deepcopy(net).double()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1, D, D)), rng.normal(size=(1, D, D))
    zs = np.array([-1.3, 0.0, 0.7])
    res = tracer.evaluate(a, b, zs)
    assert np.all(res.lo < zs) and np.all(zs < res.hi)
    for k, z0 in enumerate(zs):
        for frac in (0.02, 0.5, 0.98):
            z = res.lo[k] + frac * (res.hi[k] - res.lo[k])
            direct = _direct(net64, a + b * z, noises)
            affine = res.recon_value[k] + res.recon_slope[k] * (z - z0)
            np.testing.assert_allclose(affine, direct, rtol=0, atol=1e-9)
            # The filtered difference F = K * (D - X) is affine on the same interval.
            diff = torch.from_numpy(direct - (a + b * z))[None]
            filt = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=True).numpy()
            f_aff = res.filt_value[k] + res.filt_slope[k] * (z - z0)
            np.testing.assert_allclose(f_aff, filt.reshape(-1), rtol=0, atol=1e-9)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_some_decision_flips_just_outside_interval(variant):
    net = VARIANTS[variant]()
    noises = draw_reconstruction_noise((1, 1, D, D), STEPS, seed=4, dtype=torch.float64)
    tracer = ReconstructionTracer(net, CHAIN, noises)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1, D, D)), rng.normal(size=(1, D, D))
    z0 = 0.25
    res = tracer.evaluate(a, b, [z0], patterns=True)
    lo, hi = res.lo[0], res.hi[0]
    eps = 1e-7
    probes = [lo + eps, 0.5 * (lo + z0), 0.5 * (z0 + hi), hi - eps, lo - eps, hi + eps]
    pats = tracer.evaluate(a, b, probes, patterns=True).patterns
    for k in range(4):
        np.testing.assert_array_equal(pats[k], res.patterns[0])
    for k in (4, 5):
        assert np.any(pats[k] != res.patterns[0])


def test_tracer_matches_published_network_at_d8():
    torch.manual_seed(5)
    net = UNet().eval()
    noises = draw_reconstruction_noise((1, 1, D, D), STEPS, seed=0, dtype=torch.float64)
    tracer = ReconstructionTracer(net, CHAIN, noises)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1, D, D)), 0.1 * rng.normal(size=(1, D, D))
    res = tracer.evaluate(a, b, [0.4])
    net64 = copy.deepcopy(net).double()
    lo, hi = res.lo[0], res.hi[0]
    for z in (0.4, lo + 0.25 * (hi - lo), 0.5 * (lo + hi)):
        direct = _direct(net64, a + b * z, noises)
        affine = res.recon_value[0] + res.recon_slope[0] * (z - 0.4)
        np.testing.assert_allclose(affine, direct, rtol=0, atol=1e-9)


def test_filtered_difference_matches_line_evaluation():
    net = VARIANTS["relu-bilinear"]()
    noises = draw_reconstruction_noise((1, 1, D, D), STEPS, seed=3, dtype=torch.float64)
    tracer = ReconstructionTracer(net, CHAIN, noises)
    x = np.random.default_rng(3).normal(size=(2, 1, D, D))
    batch = tracer.filtered_difference(x)
    one = tracer.evaluate(x[1], np.zeros_like(x[1]), [0.0]).filt_value[0]
    np.testing.assert_allclose(batch[1], one, rtol=0, atol=1e-12)


def test_shrink_interval_oracle():
    v = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64).reshape(4, 1, 1, 1)
    s = torch.tensor([-0.5, 1.0, 0.0, 2.0], dtype=torch.float64).reshape(4, 1, 1, 1)
    lo = torch.tensor([-np.inf], dtype=torch.float64)
    hi = torch.tensor([np.inf], dtype=torch.float64)
    shrink_interval(v, s, lo, hi)
    # roots: 2 (unit 0), 2 (unit 1), none (unit 2), -0.25 (unit 3)
    assert hi.item() == pytest.approx(2.0) and lo.item() == pytest.approx(-0.25)


def test_unsupported_layers_are_named():
    net = _random_net()
    net.down[0].act = nn.SiLU()
    with pytest.raises(ValueError, match=r"down\.0\.act.*SiLU"):
        check_traceable(net.eval())
    net = _random_net()
    net.down[1].norm = nn.GroupNorm(1, 8)
    with pytest.raises(ValueError, match="GroupNorm"):
        check_traceable(net.eval())
    with pytest.raises(ValueError, match="eval mode"):
        check_traceable(_random_net().train())
    with pytest.raises(ValueError, match="UNet"):
        check_traceable(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)))

    class OtherForward(UNet):  # a subclass may compute something else: not traced
        pass

    with pytest.raises(ValueError, match="OtherForward"):
        check_traceable(OtherForward(UNetConfig(channels=[4, 8])).eval())
    net = _random_net()
    net.down[0].conv = nn.Conv2d(1, 4, 3, padding=1, stride=2)
    with pytest.raises(ValueError, match="stride"):
        check_traceable(net.eval())


def test_prefix_cache_gives_identical_pieces():
    from diffad.selective.prefix_cache import PrefixCache

    net = VARIANTS["relu-bilinear"]()
    noises = draw_reconstruction_noise((1, 1, D, D), STEPS, seed=3, dtype=torch.float64)
    tracer = ReconstructionTracer(net, CHAIN, noises)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(1, D, D)), rng.normal(size=(1, D, D))
    cache, z = PrefixCache(capacity=16), -1.0
    for _ in range(12):  # walk piece by piece, three points per pass
        zs = z + np.array([0.0, 0.01, 0.03])
        plain, cached = tracer.evaluate(a, b, zs), tracer.evaluate(a, b, zs, cache=cache)
        np.testing.assert_allclose(cached.lo, plain.lo, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cached.hi, plain.hi, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cached.filt_value, plain.filt_value, rtol=0, atol=1e-9)
        np.testing.assert_allclose(cached.filt_slope, plain.filt_slope, rtol=0, atol=1e-9)
        z = plain.hi[0] + 1e-9
    assert cache.size == 16


@pytest.mark.parametrize(
    ("c_out", "c_in", "kernel", "hw"), [(7, 5, 3, (2, 2)), (4, 3, 3, (1, 1)), (3, 2, 5, (2, 3))]
)
def test_dense_matrix_equals_zero_padded_conv(c_out, c_in, kernel, hw):
    gen = torch.Generator().manual_seed(c_out)
    weight = torch.randn(c_out, c_in * kernel * kernel, generator=gen, dtype=torch.float64)
    x = torch.randn(c_in, *hw, generator=gen, dtype=torch.float64)
    direct = F.conv2d(x[None], weight.reshape(c_out, c_in, kernel, kernel), padding=kernel // 2)
    out = dense_matrix(weight, c_in, kernel, hw) @ x.reshape(-1)
    assert torch.allclose(out, direct.reshape(-1), rtol=0, atol=1e-12)
