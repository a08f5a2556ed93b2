"""The algorithms on every device this machine has: the CPU always, CUDA when present (the CUDA
cases skip with a reason elsewhere; `make gpu-check` runs them on a GPU machine). A result on a
device must match the CPU's within float tolerance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.optvis import dream, invert, mine_topk, render_units
from interp.steps.featvis import render_view

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    ),
]


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()).eval()


@pytest.mark.parametrize("device", DEVICES)
def test_render_units_follows_the_model_device(device):
    model = convnet().to(device)
    result = render_units(model, "2", [0, 3], shape=(3, 24, 24), steps=16, seed=0)
    assert result.image.device.type == "cpu" and result.image.shape == (2, 3, 24, 24)
    reference = render_units(convnet(), "2", [0, 3], shape=(3, 24, 24), steps=16, seed=0)
    assert torch.allclose(result.activations, reference.activations, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_topk_dream_invert_on_the_device(device):
    model = convnet().to(device)
    data = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    top = mine_topk(model, "2", data, k=4, batch_size=16)
    assert torch.equal(top.indices, mine_topk(convnet(), "2", data, k=4, batch_size=16).indices)
    dreamed = dream(model, data[0], "2", octaves=2, steps_per_octave=2, roll=2)
    assert dreamed.image.shape == (1, 3, 16, 16) and 0 <= dreamed.image.min() <= dreamed.image.max() <= 1
    assert invert(model, "0", data[:2], steps=8).image.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_batch", [None, 2])
def test_chunks_give_the_images_of_one_batch(device, max_batch):
    """max_batch splits the units into chunks; every unit is seeded from (seed, unit), so the
    images equal one batch's up to float rounding: the matrix kernels a library picks may depend
    on the batch size (bitwise equality holds for the MLP shapes of the DDP and visualize tests)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 12), nn.ReLU(), nn.Linear(12, 6)).eval()
    for model, layer in ((mlp, "3"), (convnet(), "2")):
        model = model.to(device)
        kwargs = dict(image_shape=(3, 16, 16), seed=0, steps=8, kind="channel", transforms="default")
        one = render_view(model, layer, [0, 1, 2, 3, 4], "plain", **kwargs)
        chunked = render_view(model, layer, [0, 1, 2, 3, 4], "plain", max_batch=max_batch, **kwargs)
        assert torch.allclose(one.image, chunked.image, atol=1e-5 if device == "cpu" else 1e-4)
