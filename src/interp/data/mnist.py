"""MNIST as a LightningDataModule that keeps the whole set in memory as tensors.

The files are read from ``<root>/MNIST/raw/`` (the layout of ``torchvision.datasets.MNIST``), plain
or gzipped, by a reader that names the file and the problem when one is truncated or corrupt.
Batches are sliced from one uint8 tensor and scaled to [0, 1] per batch, never built image by
image through PIL.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from interp.errors import DataError, DataNotFoundError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DATA_DIR_ENV = "INTERP_DATA_DIR"


def default_data_root() -> str:
    """The data root.

    Returns:
        ``$INTERP_DATA_DIR`` if set, else ``./data``.
    """
    return os.environ.get(DATA_DIR_ENV) or "./data"


def _have_files(raw: Path) -> bool:
    return all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in MNIST_FILES)


_IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim


def _read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"MNIST file {path} is a corrupt or truncated gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"MNIST file {path} cannot be read: {e.strerror or e}") from None


def read_idx(path: str | os.PathLike, kind: str) -> torch.Tensor:
    """Read one MNIST IDX file (or its ``.gz``): ``kind`` ``"images"`` gives uint8 [N, H, W],
    ``"labels"`` gives int64 [N] with values 0-9.

    Args:
        path: the file.
        kind: ``"images"`` or ``"labels"``.

    Returns:
        The images or the labels.

    Raises:
        DataError: the file cannot be read, is truncated or too long, has a magic number other
            than 2051 (images) or 2049 (labels), or holds labels outside 0-9; one line that names
            the file and what is wrong.
    """
    path = Path(path)
    magic_wanted = _IDX_MAGIC[kind]
    data = _read_bytes(path)
    if len(data) < 8:
        raise DataError(f"MNIST file {path} is truncated: {len(data)} bytes, shorter than an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != magic_wanted:
        raise DataError(
            f"MNIST file {path} has magic number {magic} (0x{magic:08x}), not {magic_wanted} "
            f"(0x{magic_wanted:08x}) of an IDX {kind} file: a wrong or corrupt file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"MNIST file {path} is truncated: {len(data)} bytes, shorter than its {header}-byte header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    shape = " x ".join(str(d) for d in dims)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "too long"
        raise DataError(
            f"MNIST file {path} is {what}: {len(data)} bytes where its header ({shape}) announces {expected}"
        )
    values = torch.from_numpy(np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy())
    if kind == "labels":
        if values.numel() and int(values.max()) > 9:
            raise DataError(f"MNIST file {path} holds label {int(values.max())}; MNIST labels are 0-9")
        return values.long()
    return values


def _idx_path(raw: Path, name: str) -> Path:
    plain = raw / name
    return plain if plain.exists() else raw / f"{name}.gz"


def load_mnist(root: str | os.PathLike | None = None, train: bool = True, download: bool = True):
    """Return ``(images uint8 [N, 1, 28, 28], labels int64 [N])`` for one MNIST split.

    The IDX files are read from ``<root>/MNIST/raw/`` (plain or ``.gz``). A missing data set is
    downloaded with torchvision's own downloader when ``download`` is true.

    Args:
        root: the data root; ``None``: :func:`default_data_root`.
        train: the training split (60,000 images) or the test split (10,000).
        download: download a missing data set.

    Returns:
        ``(images, labels)``.

    Raises:
        DataNotFoundError: the files are missing and could not be downloaded (no network); names
            the folder and the files expected there.
        DataError: a file is unreadable, truncated or not an IDX file of the right kind, or the
            labels do not match the images in number; names the file.
    """
    root = Path(root if root is not None else default_data_root()).expanduser()
    raw = root / "MNIST" / "raw"
    if not _have_files(raw):
        if download:
            from torchvision.datasets import MNIST

            try:
                MNIST(str(root), train=train, download=True)
            except Exception:  # network errors come in many types (URLError, OSError, RuntimeError)
                pass
        if not _have_files(raw):
            raise DataNotFoundError(
                f"MNIST not found in {raw} and could not be downloaded: expected the files "
                f"{', '.join(MNIST_FILES)} there (set data.root=... or ${DATA_DIR_ENV})"
            )
    prefix = "train" if train else "t10k"
    image_file = _idx_path(raw, f"{prefix}-images-idx3-ubyte")
    label_file = _idx_path(raw, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(image_file, "images")
    labels = read_idx(label_file, "labels")
    if len(labels) != len(images):
        raise DataError(
            f"MNIST file {label_file} holds {len(labels)} labels for the {len(images)} images of {image_file.name}"
        )
    return images.unsqueeze(1).contiguous(), labels.contiguous()


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor; a list of indices is fetched as one sliced batch.

    ``__getitems__`` makes the DataLoader fetch a whole batch with one indexing operation; with
    :func:`collate_batch` the batch passes through unchanged. Items are ``(image, label)`` with
    the image as float in [0, 1].

    Args:
        images: the images, uint8 (0..255) or float in [0, 1], ``[N, ...]``.
        labels: one label per image.

    Raises:
        ValueError: a number of labels other than the number of images.
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
    """Collate for :class:`TensorImageDataset`: a batch fetched by ``__getitems__`` is already stacked.

    Args:
        batch: the ``(images, labels)`` of ``__getitems__``, or a list of ``(image, label)`` items.

    Returns:
        ``(images, labels)``, stacked.
    """
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch
    images, labels = zip(*batch)
    return torch.stack(images), torch.stack(labels)


def tensor_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, **kwargs) -> DataLoader:
    """A DataLoader over a :class:`TensorImageDataset` (or a Subset of one) that slices batches.

    Args:
        dataset: the data set.
        batch_size: the batch size.
        shuffle: shuffle every epoch.
        **kwargs: passed to ``DataLoader``.

    Returns:
        The loader.
    """
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
        self.train_set: TensorImageDataset | None = None
        self.val_set: TensorImageDataset | None = None
        self.test_set: TensorImageDataset | None = None
        self.full_train_set: TensorImageDataset | None = None

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

    @staticmethod
    def _ready(dataset: TensorImageDataset | None) -> TensorImageDataset:
        assert dataset is not None, "MNISTDataModule: call setup() first"  # Lightning does, before any loader
        return dataset

    def train_dataloader(self) -> DataLoader:
        return tensor_loader(self._ready(self.train_set), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return tensor_loader(self._ready(self.val_set), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return tensor_loader(self._ready(self.test_set), self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return tensor_loader(self._ready(self.test_set), self.eval_batch_size)

    # What interpretation callbacks use (any datamodule may offer these two).
    def interp_dataset(self, split: str = "train") -> Dataset:
        """The data set that interpretation mines.

        Args:
            split: ``"train"`` (the whole training set, validation images included) or ``"test"``.

        Returns:
            The data set (set up on first use).
        """
        if self.full_train_set is None:
            self.setup()
        return self._ready(self.full_train_set if split == "train" else self.test_set)
