"""LightningModules: the MNIST MLP and the VGGFace2 ResNet-50."""

from interp.models.mlp import MnistMLP, Normalize

__all__ = ["MnistMLP", "Normalize"]
