"""The project's CNN (interp.models.MnistCNN): layer names, shapes, its config file, and that it learns in
seconds. (Its accuracy with the project's settings, through the CLI: test_cnn_accuracy.py.)"""

import pytest
import torch
from torch import nn

from helpers import REPO
from interp.models.cnn import MnistCNN


def test_mnist_cnn_shape_names_and_config():
    model = MnistCNN()
    names = dict(model.named_modules())
    for n in ("normalize", "conv1", "conv2", "fc1", "fc2"):
        assert n in names
    assert isinstance(names["conv1"], nn.Conv2d) and isinstance(names["fc2"], nn.Linear)
    assert tuple(model.example_input_array.shape) == (1, 1, 28, 28)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert isinstance(model.configure_optimizers(), torch.optim.Optimizer)  # no trainer: no schedule
    with pytest.raises(ValueError, match="too small"):
        MnistCNN(input_shape=(1, 8, 8))

    from omegaconf import OmegaConf

    whole = OmegaConf.load(REPO / "configs" / "model" / "cnn.yaml")
    assert whole.layer == "conv2" and whole.experiment == "mnist_cnn"  # the file also points the interpretations
    cfg = whole.model
    assert cfg._target_ == "interp.models.MnistCNN"
    kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
    assert MnistCNN(**kwargs).hparams.channels == list(cfg.channels)


def test_mnist_cnn_learns(mnist_small):
    from helpers import train_quick

    torch.manual_seed(0)
    x, y = mnist_small
    model = train_quick(MnistCNN(channels=(8, 16), hidden=32), x[:3000], y[:3000], epochs=1, lr=3e-3)
    with torch.no_grad():
        acc = (model(x[3000:4000]).argmax(1) == y[3000:4000]).float().mean().item()
    assert acc > 0.85
