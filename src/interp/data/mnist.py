"""MNIST as a LightningDataModule that keeps the whole set in memory as tensors.

The files are read from ``<root>/MNIST/raw/`` (the layout of ``torchvision.datasets.MNIST``).
Batches are sliced from one uint8 tensor and scaled to [0, 1] per batch, never built image by
image through PIL.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset

from interp.errors import DataNotFoundError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_DIR_ENV = "INTERP_DATA_DIR"


def default_data_root() -> str:
    """The data root: ``$INTERP_DATA_DIR`` if set, else ``./data``."""
    return os.environ.get(DATA_DIR_ENV) or "./data"


def _have_files(raw: Path) -> bool:
    return all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in MNIST_FILES)


def load_mnist(root: str | os.PathLike | None = None, train: bool = True, download: bool = True):
    """Return ``(images uint8 [N, 1, 28, 28], labels int64 [N])`` for one MNIST split.

    A missing data set is downloaded with torchvision's own downloader when ``download`` is true;
    when that fails (no network) a :class:`DataNotFoundError` names the folder and the files
    expected there.
    """
    from torchvision.datasets import MNIST

    root = Path(root if root is not None else default_data_root()).expanduser()
    raw = root / "MNIST" / "raw"
    if not _have_files(raw):
        if download:
            try:
                MNIST(str(root), train=train, download=True)
            except Exception:  # network errors come in many types (URLError, OSError, RuntimeError)
                pass
        if not _have_files(raw):
            raise DataNotFoundError(
                f"MNIST not found in {raw} and could not be downloaded: expected the files "
                f"{', '.join(MNIST_FILES)} there (set data.root=... or ${DATA_DIR_ENV})"
            )
    ds = MNIST(str(root), train=train, download=False)
    return ds.data.unsqueeze(1).contiguous(), ds.targets.long().contiguous()


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor; a list of indices is fetched as one sliced batch.

    ``__getitems__`` makes the DataLoader fetch a whole batch with one indexing operation; with
    :func:`collate_batch` the batch passes through unchanged. Items are ``(image, label)`` with
    the image as float in [0, 1].
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    @staticmethod
    def _scale(x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def __getitem__(self, i):
        return self._scale(self.images[i]), self.labels[i]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._scale(self.images[idx]), self.labels[idx]


def collate_batch(batch):
    """Collate for :class:`TensorImageDataset`: a batch fetched by ``__getitems__`` is already stacked."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch
    images, labels = zip(*batch)
    return torch.stack(images), torch.stack(labels)


def tensor_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, **kwargs) -> DataLoader:
    """A DataLoader over a :class:`TensorImageDataset` (or a Subset of one) that slices batches."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_batch, **kwargs)


class MNISTDataModule(L.LightningDataModule):
    """MNIST: 55,000 train / 5,000 val (fixed seed split of the training set), 10,000 test.

    Args:
        root: data root holding ``MNIST/raw``; default ``$INTERP_DATA_DIR`` or ``./data``.
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        val_size: images of the training set held out for validation.
        subset: use only the first ``subset`` images of each split (fast runs and tests).
        seed: seed of the train/val split.
        download: download a missing data set with torchvision (needs a network).
    """

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1024,
        val_size: int = 5000,
        subset: int | None = None,
        seed: int = 1234,
        download: bool = True,
    ):
        super().__init__()
        self.root = root or default_data_root()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_size = val_size
        self.subset = subset
        self.seed = seed
        self.download = download
        self.train_set = self.val_set = self.test_set = self.full_train_set = None

    def prepare_data(self) -> None:
        load_mnist(self.root, train=True, download=self.download)
        load_mnist(self.root, train=False, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.full_train_set is not None:
            return
        x, y = load_mnist(self.root, train=True, download=False)
        xt, yt = load_mnist(self.root, train=False, download=False)
        if self.subset:
            x, y, xt, yt = x[: self.subset], y[: self.subset], xt[: self.subset], yt[: self.subset]
        n_val = min(self.val_size, len(x) // 10) if self.subset else self.val_size
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        # The full training set (60,000 images) is what interpretation mines for examples, so
        # dataset indices refer to the official training set order.
        self.full_train_set = TensorImageDataset(x, y)
        self.train_set = TensorImageDataset(x[train_idx], y[train_idx])
        self.val_set = TensorImageDataset(x[val_idx], y[val_idx])
        self.test_set = TensorImageDataset(xt, yt)

    def train_dataloader(self) -> DataLoader:
        return tensor_loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return tensor_loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return tensor_loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return tensor_loader(self.test_set, self.eval_batch_size)

    # What interpretation callbacks use (any datamodule may offer these two).
    def interp_dataset(self, split: str = "train") -> Dataset:
        """The data set that interpretation mines: ``train`` (all 60,000) or ``test``."""
        if self.full_train_set is None:
            self.setup()
        return self.full_train_set if split == "train" else self.test_set
