"""Data modules and image loading."""

from interp.data.mnist import MNISTDataModule, TensorImageDataset, collate_batch, load_mnist, tensor_loader

__all__ = ["MNISTDataModule", "TensorImageDataset", "collate_batch", "load_mnist", "tensor_loader"]
