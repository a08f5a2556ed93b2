"""The MNIST data: the data module over IDX files (synthetic and real), the environment variable, the
seeded split, and every way an IDX file can be broken (one line, an InterpError)."""

import gzip
import struct
from pathlib import Path

import pytest
import torch

from helpers import one_line
from interp.data import MNISTDataModule, load_mnist
from interp.errors import DataError, DataNotFoundError


def test_datamodule_reads_idx_files(tiny_mnist):
    root, data = tiny_mnist
    dm = MNISTDataModule(root=str(root), batch_size=32, val_size=50, download=False)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 300 and len(dm.test_set) == 100
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    full = dm.interp_dataset("train")
    img, label = full[7]
    torch.testing.assert_close(img, data["train"][0][7].float().unsqueeze(0) / 255)
    assert int(label) == 7
    images, labels = full.__getitems__([3, 5])
    assert images.shape == (2, 1, 28, 28) and labels.tolist() == [3, 5]


def test_datamodule_env_var_and_split_is_seeded(tiny_mnist, monkeypatch):
    root, _ = tiny_mnist
    monkeypatch.setenv("INTERP_DATA_DIR", str(root))
    a, b = MNISTDataModule(val_size=50), MNISTDataModule(val_size=50)
    a.setup(), b.setup()
    assert torch.equal(a.val_set.images, b.val_set.images)
    c = MNISTDataModule(val_size=50, seed=99)
    c.setup()
    assert not torch.equal(a.val_set.images, c.val_set.images)


def test_missing_data_raises_named_error(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path / "nothing", download=False)


# --- broken IDX files ----------------------------------------------------------------------------


def _real_raw(mnist_root: Path) -> Path:
    return mnist_root / "MNIST" / "raw"


def _read_real(raw: Path, name: str) -> bytes:
    plain = raw / name
    return plain.read_bytes() if plain.exists() else gzip.decompress((raw / f"{name}.gz").read_bytes())


@pytest.fixture()
def mnist_copy(tmp_path, mnist_root):
    """A tmp MNIST/raw: links to the real training files, and the first 200 test digits trimmed from
    the real t10k files (headers rewritten), which the tests break."""
    real = _real_raw(mnist_root)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        src = real / name if (real / name).exists() else real / f"{name}.gz"
        (raw / src.name).symlink_to(src)
    images = _read_real(real, "t10k-images-idx3-ubyte")
    labels = _read_real(real, "t10k-labels-idx1-ubyte")
    n = 200
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images[16 : 16 + n * 784])
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels[8 : 8 + n])
    return tmp_path / "data", raw, images, labels


def _load_test(root):
    from interp.data import load_mnist

    return load_mnist(root, train=False, download=False)


def test_trimmed_real_idx_files_load_plain_and_gzipped(mnist_copy):
    root, raw, images, labels = mnist_copy
    x, y = _load_test(root)
    assert x.shape == (200, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert y[:5].tolist() == list(labels[8:13]) and bytes(x[0, 0].flatten().tolist()) == images[16 : 16 + 784]
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    x2, y2 = _load_test(root)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_truncated_idx_file(mnist_copy):
    root, raw, _, _ = mnist_copy
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte is truncated: 156716 bytes .*200 x 28 x 28.* 156816"
    ) as exc:
        _load_test(root)
    one_line(exc)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        _load_test(root)


def test_bad_magic_number(mnist_copy):
    root, raw, _, _ = mnist_copy
    path = raw / "t10k-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(struct.pack(">I", 2049) + data[4:])  # a labels magic on the images file
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte has magic number 2049 .*not 2051") as exc:
        _load_test(root)
    one_line(exc)
    assert not isinstance(exc.value, AssertionError)


def test_fewer_labels_than_images(mnist_copy):
    from interp.data import MNISTDataModule

    root, raw, _, labels = mnist_copy
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 150) + labels[8 : 8 + 150])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte holds 150 labels for the 200 images") as exc:
        _load_test(root)
    one_line(exc)
    dm = MNISTDataModule(root=str(root), subset=100, download=False)  # subset must not hide it
    with pytest.raises(DataError, match="150 labels for the 200 images"):
        dm.setup()


def test_unreadable_and_corrupt_idx_files(mnist_copy):
    root, raw, _, _ = mnist_copy
    path = raw / "t10k-labels-idx1-ubyte"
    path.unlink()
    path.mkdir()  # exists, but cannot be read as a file
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte cannot be read") as exc:
        _load_test(root)
    one_line(exc)
    path.rmdir()
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is a corrupt or truncated gzip") as exc:
        _load_test(root)
    one_line(exc)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    path.write_bytes(struct.pack(">II", 2049, 200) + bytes([3] * 199 + [77]))
    with pytest.raises(DataError, match="holds label 77"):
        _load_test(root)
