"""LightningModules: the MNIST MLP and the VGGFace2 ResNet-50."""

from interp.models.mlp import MnistMLP, Normalize
from interp.models.vggface2 import CaffePreprocess, FaceResNet50, VGGFace2ResNet50

__all__ = ["CaffePreprocess", "FaceResNet50", "MnistMLP", "Normalize", "VGGFace2ResNet50"]
