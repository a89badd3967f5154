import pytest
import torch

from diffad.diffusion.chain import ddim_timesteps, draw_reconstruction_noise, reconstruct
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetConfig


def test_published_ddim_chain():
    assert ddim_timesteps(460, 5) == [460, 345, 230, 115, 0]
    with pytest.raises(ValueError):
        ddim_timesteps(3, 10)


def test_reconstruction_is_bit_reproducible_and_seed_dependent():
    torch.manual_seed(0)
    net = UNet(UNetConfig(channels=[4, 8], time_dim=8)).eval()
    s = NoiseSchedule.linear(1000)
    x = torch.rand(2, 1, 8, 8)
    steps = ddim_timesteps(460, 5)

    def run(seed):
        with torch.no_grad():
            return reconstruct(net, s, x, steps, draw_reconstruction_noise(x.shape, steps, seed))

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
    assert run(3).shape == x.shape
