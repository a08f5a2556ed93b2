"""A small MNIST convnet, as a LightningModule shaped like :class:`~interp.models.mlp.MnistMLP`.

Two conv blocks and a classifier::

    normalize -> conv1 (5x5) -> pool1 (2x2) -> bn1 -> relu1      28x28 -> 24x24 -> 12x12
              -> conv2 (5x5) -> pool2 (2x2) -> bn2 -> relu2      12x12 -> 8x8 -> 4x4
              -> flatten -> dropout1 -> fc1 -> relu3 -> dropout2 -> fc2

``conv1`` and ``conv2`` are the convolutions whose outputs (channel maps, before pooling, batch norm
and ReLU) are what users interpret: ``layer=conv2 units=0-15`` looks at 16 channels. With the default
5x5 kernels and no padding their receptive fields are 5x5 and 14x14 input pixels
(:func:`interp.optvis.receptive.receptive_field`). Pooling comes before batch norm and ReLU: the
same function as the usual order for max pooling with a positive batch-norm scale, at a quarter of
the cost of the element-wise layers. ``fc1`` is the
hidden layer of the classifier and ``fc2`` gives the logits. Normalization is a module inside the
model, so it takes images in [0, 1] shaped (N, 1, 28, 28), like the MLP.

Example::

    >>> model = MnistCNN(channels=(8, 16), hidden=32)
    >>> model(torch.rand(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interp.models.classifier import ImageClassifier
from interp.models.mlp import MNIST_MEAN, MNIST_STD, Normalize


class MnistCNN(ImageClassifier):
    """MNIST classifier with two conv blocks (``conv1``, ``conv2``) and two linear layers (``fc1``, ``fc2``).

    Args:
        channels: output channels of ``conv1`` and ``conv2``.
        hidden: width of ``fc1``.
        dropout: dropout before ``fc1`` and before ``fc2``.
        batchnorm: batch norm after each convolution (``bn1``, ``bn2``); ``False`` puts identities there.
        lr: learning rate of the optimizer.
        weight_decay: decoupled weight decay (AdamW) when > 0, else plain Adam.
        optimizer: ``adam`` (default) or ``rmsprop``.
        schedule: ``cosine`` (the learning rate decays to 0 over ``trainer.max_epochs``, per epoch),
            ``onecycle`` (warm-up then cosine decay, per step) or ``none``.
        label_smoothing: label smoothing of the training loss (evaluation losses use none).
        input_shape: image shape (C, H, W) the model takes (H and W divisible by 4).
        num_classes: number of classes.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 5,
        padding: int = 0,
        hidden: int = 128,
        dropout: float = 0.25,
        batchnorm: bool = True,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        schedule: str = "onecycle",
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.check_hparams()
        c, h, w = input_shape
        c1, c2 = (int(n) for n in channels)
        k, p = int(kernel_size), int(padding)
        self.example_input_array = torch.zeros(1, c, h, w)
        self.default_layer = "conv2"  # what `interp visualize` looks at unless told otherwise
        self.normalize = Normalize([MNIST_MEAN] * c, [MNIST_STD] * c)
        self.conv1 = nn.Conv2d(c, c1, kernel_size=k, padding=p, bias=not batchnorm)
        self.pool1 = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c1) if batchnorm else nn.Identity()
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=k, padding=p, bias=not batchnorm)
        self.pool2 = nn.MaxPool2d(2)
        self.bn2 = nn.BatchNorm2d(c2) if batchnorm else nn.Identity()
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.dropout1 = nn.Dropout(dropout)
        for _ in range(2):
            h, w = (h + 2 * p - k + 1) // 2, (w + 2 * p - k + 1) // 2
        if h < 1 or w < 1:
            raise ValueError(f"input_shape {tuple(input_shape)} is too small for two {k}x{k} conv blocks")
        self.fc1 = nn.Linear(c2 * h * w, hidden)
        self.relu3 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.setup_metrics(num_classes)
        self._channels_last = bool(channels_last)
        if channels_last:
            # oneDNN's convolutions and pooling are ~1.6x faster in NHWC on CPU. Conv weights are
            # stored NHWC (a checkpoint loads into them unchanged); activations of conv1..relu2 come
            # out NHWC too: same values and shapes, use .reshape rather than .view on them.
            self.conv1.to(memory_format=torch.channels_last)
            self.conv2.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.relu1(self.bn1(self.pool1(self.conv1(x))))
        x = self.relu2(self.bn2(self.pool2(self.conv2(x))))
        x = self.dropout1(self.flatten(x))
        x = self.dropout2(self.relu3(self.fc1(x)))
        return self.fc2(x)
