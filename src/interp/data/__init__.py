"""Data modules and image loading."""

from interp.data.images import ImageFolderDataset, default_face_image_path, face_transform, load_image
from interp.data.mnist import MNISTDataModule, TensorImageDataset, collate_batch, load_mnist, tensor_loader

__all__ = [
    "ImageFolderDataset",
    "MNISTDataModule",
    "TensorImageDataset",
    "collate_batch",
    "default_face_image_path",
    "face_transform",
    "load_image",
    "load_mnist",
    "tensor_loader",
]
