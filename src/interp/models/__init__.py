"""LightningModules: the MNIST MLP and CNN, the VGGFace2 ResNet-50, the face-api recognition and expression
nets, the learned image prior, and a normalizing wrapper for other people's models."""

from interp.models.cnn import MnistCNN
from interp.models.faceapi import FaceExpressionNet, FaceRecognitionNet
from interp.models.mlp import MnistMLP, Normalize
from interp.models.prior import ImagePrior, PriorSettings, train_prior
from interp.models.vggface2 import CaffePreprocess, FaceResNet50, VGGFace2ResNet50

__all__ = [
    "CaffePreprocess",
    "FaceExpressionNet",
    "FaceRecognitionNet",
    "FaceResNet50",
    "ImagePrior",
    "MnistCNN",
    "MnistMLP",
    "Normalize",
    "VGGFace2ResNet50",
    "PriorSettings",
    "train_prior",
]
