import numpy as np
import pytest
import torch

from diffad.diffusion import DDIMScheduler, DDPMScheduler, NoiseSchedule, cosine_betas, linear_betas
from diffad.diffusion.unet import UNet, UNetConfig


def test_linear_betas_endpoints_and_alpha_bar():
    s = NoiseSchedule.linear(1000, 1e-4, 0.02)
    assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - s.betas))
    assert np.all(np.diff(s.alpha_bars) < 0)


def test_cosine_betas_bounded_and_decreasing_alpha_bar():
    b = cosine_betas(100)
    assert b.shape == (100,) and np.all(b > 0) and np.all(b <= 0.999)
    assert np.all(np.diff(NoiseSchedule(b).alpha_bars) < 0)


@pytest.mark.parametrize(
    "bad", [(0, 1e-4, 0.02), (10, 0.0, 0.02), (10, 0.1, 0.01), (10, 1e-4, 1.0)]
)
def test_linear_betas_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        linear_betas(*bad)


def test_forward_noising_matches_definitions():
    s = NoiseSchedule.linear(400, 1e-4, 1e-2)
    x0, eps = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor([0, 10, 100, 200, 399])
    ab = torch.tensor(s.alpha_bars[t.numpy()])[:, None]
    torch.testing.assert_close(s.add_noise_ve(x0, eps, t), x0 + (1 - ab).sqrt() * eps)
    torch.testing.assert_close(s.add_noise_vp(x0, eps, t), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    with pytest.raises(ValueError):
        s.add_noise_vp(x0, eps, torch.tensor([400] * 5))


def test_ddim_eta0_with_true_noise_recovers_x0():
    # With the exact ε, deterministic DDIM maps x_t back to x_0 for any step chain.
    s = NoiseSchedule.linear(1000)
    ddim = DDIMScheduler(s, eta=0.0)
    x0, eps = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    x = s.add_noise_vp(x0, eps, torch.full((4,), 460))
    chain = [460, 345, 230, 115, -1]
    for t, t_prev in zip(chain[:-1], chain[1:], strict=True):
        x = ddim.step(eps, t, t_prev, x)
        if t_prev >= 0:
            torch.testing.assert_close(x, s.add_noise_vp(x0, eps, torch.full((4,), t_prev)))
    torch.testing.assert_close(x, x0)


def test_samplers_are_reproducible_with_a_generator():
    s = NoiseSchedule.linear(50)
    x, eps = torch.randn(3, 4), torch.randn(3, 4)
    for step in (
        lambda g: DDPMScheduler(s).step(eps, 10, x, generator=g),
        lambda g: DDIMScheduler(s, eta=1.0).step(eps, 10, 5, x, generator=g),
    ):
        a = step(torch.Generator().manual_seed(0))
        b = step(torch.Generator().manual_seed(0))
        c = step(torch.Generator().manual_seed(1))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_unet_shapes_and_input_checks():
    net = UNet(UNetConfig(channels=[4, 8], time_dim=8)).eval()
    assert net(torch.randn(2, 1, 8, 8), 3).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="channel"):
        net(torch.randn(2, 3, 8, 8), 3)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(2, 1, 7, 8), 3)
    with pytest.raises(ValueError):
        UNetConfig(activation="silu")
