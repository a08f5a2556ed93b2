"""The MNIST MLP of the Keras ``mnist_mlp`` example, as a LightningModule.

784-512-512-10 with ReLU and dropout 0.2 after each hidden layer. The linear layers are named
``dense_1``, ``dense_2``, ``dense_3`` like the Keras model, so ``dense_1`` unit 32 means the same
neuron here as in the original notebook (its pre-activation: the ReLU is the separate module
``relu_1``, so maximizing ``dense_1`` never stalls on a dead ReLU). Normalization and flattening
are modules inside the model: it takes images in [0, 1] shaped (N, 1, 28, 28).
"""

from __future__ import annotations

import torch
from torch import nn

from interp.models.classifier import ImageClassifier

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std as buffers (they follow ``.to()``).

    Args:
        mean: one value, or one per channel.
        std: one value, or one per channel.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MnistMLP(ImageClassifier):
    """MNIST classifier 784-512-512-10 (``dense_1``, ``dense_2``, ``dense_3``).

    Args:
        hidden: width of the two hidden layers.
        dropout: dropout after each hidden ReLU.
        lr: learning rate of the optimizer.
        optimizer: ``adam`` (default) or ``rmsprop`` (the Keras example's choice).
        schedule: ``cosine`` (the learning rate decays to 0 over ``trainer.max_epochs``) or ``none``.
        input_shape: image shape (C, H, W) the model takes.
    """

    def __init__(
        self,
        hidden: int = 512,
        dropout: float = 0.2,
        lr: float = 1e-3,
        optimizer: str = "adam",
        schedule: str = "cosine",
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.check_hparams()
        c, h, w = input_shape
        self.example_input_array = torch.zeros(1, c, h, w)
        self.default_layer = "dense_1"  # what `interp visualize` looks at unless told otherwise
        self.normalize = Normalize([MNIST_MEAN] * c, [MNIST_STD] * c)
        self.flatten = nn.Flatten()
        self.dense_1 = nn.Linear(c * h * w, hidden)
        self.relu_1 = nn.ReLU()
        self.dropout_1 = nn.Dropout(dropout)
        self.dense_2 = nn.Linear(hidden, hidden)
        self.relu_2 = nn.ReLU()
        self.dropout_2 = nn.Dropout(dropout)
        self.dense_3 = nn.Linear(hidden, num_classes)
        self.setup_metrics(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.normalize(x))
        x = self.dropout_1(self.relu_1(self.dense_1(x)))
        x = self.dropout_2(self.relu_2(self.dense_2(x)))
        return self.dense_3(x)
