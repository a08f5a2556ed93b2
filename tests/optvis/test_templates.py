"""interp.optvis.templates: weight templates of the layers that read the input, the diverging colour map
and its colour bar."""

import pytest
import torch
from torch import nn

from interp.models.cnn import MnistCNN
from interp.models.mlp import MNIST_STD, MnistMLP
from interp.optvis.templates import NEGATIVE, POSITIVE, colorbar, diverging_colormap, weight_template


def test_weight_template_of_mlp_dense_1():
    torch.manual_seed(0)
    model = MnistMLP()
    t = weight_template(model, "dense_1", [32, 7])
    assert t.shape == (2, 1, 28, 28)
    assert torch.equal(t[0].flatten(), model.dense_1.weight[32]) and torch.equal(
        t[1].flatten(), model.dense_1.weight[7]
    )
    assert weight_template(model, "dense_1").shape == (512, 1, 28, 28)
    assert weight_template(model, "dense_1", 3).shape == (1, 1, 28, 28)
    img = weight_template(model, "dense_1", [32], space="image")  # the normalization's 1/std included
    torch.testing.assert_close(img, t[:1] / MNIST_STD)
    with pytest.raises(ValueError, match="out of range"):
        weight_template(model, "dense_1", [512])


def test_weight_template_refuses_layers_that_do_not_read_the_input():
    mlp = MnistMLP()
    with pytest.raises(ValueError, match="does not read the input directly"):
        weight_template(mlp, "dense_2")
    cnn = MnistCNN(channels=(4, 8), hidden=16)
    with pytest.raises(ValueError, match="not an nn.Linear"):
        weight_template(cnn, "conv1")
    with pytest.raises(ValueError, match="does not read the input directly"):
        weight_template(cnn, "fc1", input_shape=(1, 28, 28))
    # same number of features as pixels, but a convolution mixes them first
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="mixes pixels"):
        weight_template(net, "2", input_shape=(1, 4, 4))
    ok = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    assert weight_template(ok, "1", input_shape=(1, 4, 4)).shape == (2, 1, 4, 4)


def test_diverging_colormap_colors_and_shapes():
    t = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 2.0, 5.0]])
    rgb = diverging_colormap(t, vmax=2.0)
    assert rgb.shape == (3, 1, 6)
    assert torch.allclose(rgb[:, 0, 0], torch.tensor(NEGATIVE))
    assert torch.allclose(rgb[:, 0, 2], torch.ones(3))
    assert torch.allclose(rgb[:, 0, 4], torch.tensor(POSITIVE))
    assert torch.allclose(rgb[:, 0, 5], torch.tensor(POSITIVE))  # clamped
    # symmetric: half-way on each side is half-way between white and the end color
    assert torch.allclose(rgb[:, 0, 1], (1 + torch.tensor(NEGATIVE)) / 2)
    assert torch.allclose(rgb[:, 0, 3], (1 + torch.tensor(POSITIVE)) / 2)
    assert (rgb >= 0).all() and (rgb <= 1).all()
    # default vmax: the largest |value| of the whole batch
    batch = torch.tensor([[[[1.0, -4.0]]], [[[2.0, 0.0]]]])  # [2, 1, 1, 2]
    out = diverging_colormap(batch)
    assert out.shape == (2, 3, 1, 2)
    assert torch.allclose(out[0, :, 0, 1], torch.tensor(NEGATIVE))
    assert torch.allclose(out[1, :, 0, 0], (1 + torch.tensor(POSITIVE)) / 2)
    assert diverging_colormap(torch.zeros(4, 5)).eq(1).all()  # all zero: white, no division by 0
    assert diverging_colormap(torch.randn(3, 4, 5)).shape == (3, 3, 4, 5)
    assert diverging_colormap(torch.randn(1, 4, 5)).shape == (3, 4, 5)
    assert diverging_colormap(weight_template(MnistMLP(), "dense_1", range(4))).shape == (4, 3, 28, 28)


def test_colorbar():
    bar = colorbar(3.0, height=21, width=4)
    assert bar.shape == (3, 21, 4)
    assert torch.allclose(bar[:, 0, 0], torch.tensor(POSITIVE))
    assert torch.allclose(bar[:, -1, 0], torch.tensor(NEGATIVE))
    assert torch.allclose(bar[:, 10, :], torch.ones(3, 4))
    assert torch.equal(bar, diverging_colormap(torch.linspace(3, -3, 21).view(21, 1).expand(21, 4), vmax=3.0))
    wide = colorbar(1.0, height=4, width=9)
    assert wide.shape == (3, 4, 9)
    assert torch.allclose(wide[:, 0, 0], torch.tensor(NEGATIVE)) and torch.allclose(
        wide[:, 3, 8], torch.tensor(POSITIVE)
    )
    with pytest.raises(ValueError):
        colorbar(0.0)
