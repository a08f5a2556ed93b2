"""Hardening of the inputs: image modes and files, the image contract, MNIST IDX files, run folders,
checkpoints and run configs. Every user error is one line, an InterpError."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interp.data.images import ImageFolderDataset, load_image
from interp.errors import (
    CheckpointError,
    DataError,
    DataNotFoundError,
    ImageRangeError,
    ImageReadError,
    InterpError,
    UnsafeConfigError,
)
from interp.optvis.inputs import as_image_batch, check_image_range, pil_to_tensor


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    assert isinstance(exc.value, InterpError)
    return message


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)


# --- load_image: every PIL mode at its real scale -----------------------------------------------


def test_16bit_grayscale_png_is_scaled_by_65535(tmp_path):
    pixels = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode == "I;16"
    gray = load_image(tmp_path / "deep.png", mode="L")
    close(gray[0], pixels / 65535)
    rgb = load_image(tmp_path / "deep.png")
    assert rgb.shape == (3, 2, 2) and torch.equal(rgb[0], rgb[2])
    assert 0.49 < float(rgb[0, 1, 0]) < 0.51  # was 1.0 (all white) before


def test_16bit_big_endian_tiff(tmp_path):
    pixels = np.array([[0, 16384, 65535]], np.uint16)
    Image.fromarray(pixels.astype(">u2")).save(tmp_path / "be.tif")
    with Image.open(tmp_path / "be.tif") as img:
        assert img.mode == "I;16B"
    close(load_image(tmp_path / "be.tif", mode="L")[0], pixels / 65535)


def test_32bit_integer_image_uses_the_files_bit_depth(tmp_path):
    Image.fromarray(np.array([[0, 2**30, 2**31 - 1]], np.int32)).save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as img:
        assert img.mode == "I"
    close(load_image(tmp_path / "i32.tif", mode="L")[0], [[0.0, 2**30 / (2**31 - 1), 1.0]])
    # An "I" image without a bit depth in the file (PNG, PGM, in memory) is 16-bit.
    in_memory = Image.fromarray(np.array([[0, 65535]], np.uint16)).convert("I")
    close(pil_to_tensor(in_memory), [[[0.0, 1.0]]])
    Image.fromarray(np.array([[-5, 10]], np.int32)).save(tmp_path / "neg.tif")
    with pytest.raises(ImageReadError, match=r"neg.tif.*\[-5, 10\]") as exc:
        load_image(tmp_path / "neg.tif")
    one_line(exc)


def test_float_image_must_be_in_unit_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.25, 1.0]], np.float32)).save(tmp_path / "f.tif")
    with Image.open(tmp_path / "f.tif") as img:
        assert img.mode == "F"
    close(load_image(tmp_path / "f.tif", mode="L")[0], [[0.0, 0.25, 1.0]])
    Image.fromarray(np.array([[0.0, 200.0]], np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageRangeError, match=r"hdr.tif.*\[0, 200\].*divide by 255") as exc:
        load_image(tmp_path / "hdr.tif")
    one_line(exc)


def test_palette_with_transparency_is_composited(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    img.putdata([0, 1, 2])
    img.save(tmp_path / "pal.png", transparency=1)  # green is transparent
    with Image.open(tmp_path / "pal.png") as check:
        assert check.mode == "P" and check.info.get("transparency") == 1
    image = load_image(tmp_path / "pal.png")
    close(image[:, 0, 0], [1.0, 0.0, 0.0])
    close(image[:, 0, 1], [1.0, 1.0, 1.0])  # over white
    close(image[:, 0, 2], [0.0, 0.0, 1.0])
    close(load_image(tmp_path / "pal.png", background=0.0)[:, 0, 1], [0.0, 0.0, 0.0])
    img.save(tmp_path / "opaque.png")  # no transparency: the palette colours
    close(load_image(tmp_path / "opaque.png")[:, 0, 1], [0.0, 1.0, 0.0])


def test_gray_with_alpha(tmp_path):
    la = np.zeros((1, 2, 2), np.uint8)
    la[0, 0] = (100, 255)
    la[0, 1] = (0, 51)  # black at 20% opacity over white: 0.8
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    gray = load_image(tmp_path / "la.png", mode="L")
    assert gray.shape == (1, 1, 2)
    close(gray[0, 0], [100 / 255, 0.8])


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 102]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = load_image(tmp_path / "rgba.png")
    close(image[:, 0, 0], [1.0, 1.0, 1.0])  # fully transparent red shows the white page
    close(image[:, 0, 1], [0.0, 0.0, 1.0])
    close(image[:, 0, 2], [0.6, 0.6, 0.6])  # black at 40% over white
    close(load_image(tmp_path / "rgba.png", background=0.0)[:, 0, 0], [0.0, 0.0, 0.0])


def test_cmyk(tmp_path):
    img = Image.new("CMYK", (2, 1))
    img.putdata([(255, 0, 0, 0), (0, 0, 0, 0)])
    img.save(tmp_path / "cmyk.tif")
    with Image.open(tmp_path / "cmyk.tif") as check:
        assert check.mode == "CMYK"
    image = load_image(tmp_path / "cmyk.tif")
    close(image[:, 0, 0], [0.0, 1.0, 1.0])  # cyan
    close(image[:, 0, 1], [1.0, 1.0, 1.0])


def test_one_bit(tmp_path):
    img = Image.new("1", (2, 1))
    img.putdata([0, 255])
    img.save(tmp_path / "bw.png")
    with Image.open(tmp_path / "bw.png") as check:
        assert check.mode == "1"
    close(load_image(tmp_path / "bw.png", mode="L")[0], [[0.0, 1.0]])
    close(load_image(tmp_path / "bw.png")[:, 0, 1], [1.0, 1.0, 1.0])


def test_grayscale_with_transparent_value(tmp_path):
    img = Image.fromarray(np.array([[0, 100]], np.uint8))
    img.save(tmp_path / "trns.png", transparency=100)
    close(load_image(tmp_path / "trns.png", mode="L")[0], [[0.0, 1.0]])


# --- image file errors --------------------------------------------------------------------------


def test_image_path_errors_are_one_line(tmp_path):
    with pytest.raises(DataNotFoundError, match="missing.png") as exc:
        load_image(tmp_path / "missing.png")
    assert isinstance(exc.value, FileNotFoundError)
    one_line(exc)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageReadError, match="folder.png is a folder") as exc:
        load_image(tmp_path / "folder.png")
    one_line(exc)
    (tmp_path / "text.png").write_text("hello\nworld\n")
    with pytest.raises(ImageReadError, match="text.png is not an image") as exc:
        load_image(tmp_path / "text.png")
    one_line(exc)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg") as exc:
        load_image(tmp_path / "empty.jpg")
    one_line(exc)


def test_unreadable_image_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    if os.geteuid() != 0:  # root reads anything: simulate the refusal there
        path.chmod(0)
    else:

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(Image, "open", refuse)
    try:
        with pytest.raises(ImageReadError, match=r"secret.png cannot be read: Permission denied") as exc:
            load_image(path)
        one_line(exc)
    finally:
        path.chmod(0o644)


def test_decompression_bomb_names_the_pixel_count(tmp_path, monkeypatch):
    Image.new("L", (12, 12)).save(tmp_path / "warn.png")  # 144 pixels: PIL only warns
    Image.new("L", (20, 20)).save(tmp_path / "bomb.png")  # 400 > 2 x limit: PIL raises
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, pixels in (("warn.png", "144 pixels"), ("bomb.png", "400 pixels")):
            with pytest.raises(ImageReadError, match=rf"{name}: {pixels}, more than .*MAX_IMAGE_PIXELS") as exc:
                load_image(tmp_path / name)
            one_line(exc)


def test_truncated_image_is_one_line(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png") as exc:
        load_image(tmp_path / "cut.png")
    one_line(exc)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere") as exc:
        ImageFolderDataset(tmp_path / "nowhere")
    one_line(exc)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file, not a folder") as exc:
        ImageFolderDataset(tmp_path / "file.png")
    one_line(exc)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match="no image files") as exc:
        ImageFolderDataset(tmp_path / "empty")
    one_line(exc)


def test_image_folder_skips_unreadable_files_with_one_warning(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (4, 4), (i, i, i)).save(folder / f"good{i}.png")
    (folder / "bad.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning) as record:
        dataset = ImageFolderDataset(folder)
    assert len(record) == 1
    assert "skipped 2 of 5 image files" in str(record[0].message)
    assert len(dataset) == 3 and [p.name for p in dataset.paths] == ["good0.png", "good1.png", "good2.png"]
    assert sorted(p.name for p, _ in dataset.skipped) == ["bad.png", "empty.jpg"]
    assert dataset[2][0].shape == (3, 4, 4)

    for i in range(3):
        (folder / f"good{i}.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="none of the 5 image files") as exc:
        ImageFolderDataset(folder)
    one_line(exc)


# --- as_image_batch and check_image_range -------------------------------------------------------


def test_as_image_batch_accepts_the_contracts_forms():
    chw = torch.rand(3, 4, 5)
    batch = as_image_batch(chw)
    assert batch.shape == (1, 3, 4, 5) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[0], chw)
    batch[0, 0, 0, 0] = 7.0
    assert float(chw[0, 0, 0]) != 7.0  # never the caller's memory
    bchw = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    assert as_image_batch(bchw).dtype == torch.float32
    u8 = torch.tensor([[[0, 51, 255]]], dtype=torch.uint8)
    close(as_image_batch(u8), [[[[0.0, 0.2, 1.0]]]])
    hw = np.array([[0, 255]], np.uint8)
    close(as_image_batch(hw), [[[[0.0, 1.0]]]])
    hwc = np.zeros((2, 3, 3), np.uint8)
    hwc[..., 1] = 255
    out = as_image_batch(hwc)
    assert out.shape == (1, 3, 2, 3) and float(out[0, 1].min()) == 1.0 and float(out[0, 0].max()) == 0.0
    close(as_image_batch(np.full((2, 2, 1), 0.5, np.float32)), torch.full((1, 1, 2, 2), 0.5))
    close(as_image_batch(np.array([[0, 65535]], np.uint16)), [[[[0.0, 1.0]]]])
    pil = Image.fromarray(hwc)
    torch.testing.assert_close(as_image_batch(pil), out)
    assert as_image_batch(Image.new("L", (5, 4), 255)).shape == (1, 1, 4, 5)
    close(as_image_batch(torch.tensor([[[-5e-5, 1.00005]]])), [[[[0.0, 1.0]]]])  # rounding


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ([0.0, 128.0, 255.0], r"\[0, 255\] are outside \[0, 1\]: divide by 255"),
        ([-2.1, 0.0, 2.6], r"\[-2.1, 2.6\] are outside \[0, 1\]: undo the normalization"),
        ([0.0, 1.001], r"\[0, 1.001\].*divide by 255"),
        ([0.0, 4000.0], r"\[0, 4000\].*divide by 65535"),
        ([0.0, float("nan")], r"NaN"),
    ],
)
def test_float_images_outside_unit_range_are_refused(values, pattern):
    t = torch.tensor([[values]])
    with pytest.raises(ImageRangeError, match=pattern) as exc:
        as_image_batch(t, name="start image")
    assert isinstance(exc.value, ValueError)
    assert one_line(exc).startswith("start image: ")
    with pytest.raises(ImageRangeError, match=pattern):
        as_image_batch(np.array(values, np.float32)[None, :, None])


def test_as_image_batch_shape_and_type_errors():
    with pytest.raises(InterpError, match=r"permute\(2, 0, 1\)") as exc:
        as_image_batch(torch.rand(28, 28, 3))
    one_line(exc)
    with pytest.raises(InterpError, match=r"x\[None\]"):
        as_image_batch(torch.rand(28, 28))
    with pytest.raises(InterpError, match=r"looks like \(C, H, W\)"):
        as_image_batch(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ImageRangeError, match="int64"):
        as_image_batch(torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(InterpError, match="list"):
        as_image_batch([[0.0]])


def test_check_image_range_for_loader_batches():
    batch = torch.rand(4, 1, 5, 5)
    assert check_image_range(batch, "mine_topk data") is batch
    with pytest.raises(ImageRangeError, match=r"mine_topk data: values in \[-0\.4242, 2\.821\]") as exc:
        check_image_range((torch.tensor([[[[-0.4242, 2.821]]]])), "mine_topk data")
    one_line(exc)
    with pytest.raises(ImageRangeError, match=r"torch.uint8.*x.float\(\) / 255"):
        check_image_range(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), "mine_topk data")


# --- MNIST IDX files ----------------------------------------------------------------------------


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


# --- run folders --------------------------------------------------------------------------------


def test_make_run_dir_is_atomic_under_contention(tmp_path):
    from interp.runs import make_run_dir

    stamp = "2026-11-30_12-00-00"
    barrier = threading.Barrier(8)
    made: list[Path] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            made.append(make_run_dir(tmp_path / "runs" / "exp", stamp))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = sorted(p.name for p in made)
    assert len(set(names)) == 8
    assert set(names) == {stamp, *(f"{stamp}-{i}" for i in range(1, 8))}
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)
    (tmp_path / "runs" / "exp" / stamp / "keep.txt").write_text("old run")
    again = make_run_dir(tmp_path / "runs" / "exp", stamp)
    assert again.name == f"{stamp}-8"
    with pytest.raises(InterpError, match="plain name"):
        make_run_dir(tmp_path, "../escape")


def _touch_ckpt(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def test_find_checkpoint_latest_stays_in_its_experiment(tmp_path):
    from interp.runs import find_checkpoint

    runs = tmp_path / "runs"
    now = time.time()
    mine = _touch_ckpt(runs / "mnist_mlp" / "t1" / "checkpoints" / "last.ckpt", now - 100)
    _touch_ckpt(runs / "mnist_mlp" / "t0" / "checkpoints" / "last.ckpt", now - 200)
    other = _touch_ckpt(runs / "mnist_cnn" / "t2" / "checkpoints" / "last.ckpt", now)
    assert find_checkpoint("latest", runs) == str(other)
    assert find_checkpoint("latest", runs, experiment="mnist_mlp") == str(mine)
    assert find_checkpoint("latest", runs, exclude=runs / "mnist_mlp" / "t1", experiment="mnist_mlp").endswith(
        "t0/checkpoints/last.ckpt"
    )
    with pytest.raises(InterpError, match="no checkpoint found for experiment 'vgg'") as exc:
        find_checkpoint("latest", runs, experiment="vgg")
    one_line(exc)
    with pytest.raises(InterpError, match="is a folder"):
        find_checkpoint(str(runs / "mnist_mlp" / "t1"), runs)


# --- checkpoints --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint written by Lightning for the project's MLP, the way `interp train` writes it."""
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from interp.models import MnistMLP

    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = MnistMLP(hidden=32)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
        callbacks=[ModelCheckpoint(dirpath=folder / "checkpoints", save_last=True)],
    )
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    return folder / "checkpoints" / "last.ckpt"


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (shutil.copyfile, (__file__, str(self.marker)))


def test_load_checkpoint_file_reads_a_real_checkpoint(real_checkpoint):
    from interp.models import MnistMLP
    from interp.runs import load_checkpoint_file

    ckpt = load_checkpoint_file(real_checkpoint)
    assert {"state_dict", "hyper_parameters", "pytorch-lightning_version"} <= set(ckpt)
    assert ckpt["hyper_parameters"]["hidden"] == 32
    assert MnistMLP.load_from_checkpoint(real_checkpoint, map_location="cpu").hparams.hidden == 32


def test_load_checkpoint_file_refuses_what_is_not_a_checkpoint(tmp_path, real_checkpoint):
    from interp.runs import load_checkpoint_file

    good = real_checkpoint.read_bytes()
    marker = tmp_path / "copied.txt"
    files = {
        "empty.ckpt": (b"", "the file is empty"),
        "truncated.ckpt": (good[: len(good) // 2], "corrupt, truncated or not a torch file: PytorchStreamReader"),
        "text.ckpt": (b"epoch: 3\nlr: 0.1\n", "not a torch file: a text file"),
        "raw_pickle.ckpt": (pickle.dumps({"state_dict": _Evil(marker)}), "corrupt, truncated or not a torch file"),
        "zip.ckpt": (b"PK\x03\x04garbage", "not a ZIP archive"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"state_dict": _Evil(marker)}, tmp_path / "evil.ckpt")
    files["evil.ckpt"] = (None, r"Python object \(shutil.copyfile\)")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain_weights.pt")
    files["plain_weights.pt"] = (None, "no state_dict, hyper_parameters")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    files["tensor.pt"] = (None, "holds a Tensor")
    torch.save(
        {"state_dict": {"w": "text"}, "hyper_parameters": {}, "pytorch-lightning_version": "2"}, tmp_path / "odd.ckpt"
    )
    files["odd.ckpt"] = (None, "not a dict of tensors")
    files["missing.ckpt"] = (None, "no such file")
    for name, (_, reason) in files.items():
        path = tmp_path / name
        with pytest.raises(CheckpointError, match=rf"^not a checkpoint of this project: .*{name} \(.*{reason}") as exc:
            load_checkpoint_file(path)
        message = one_line(exc)
        assert "weights_only" not in message and "safe_globals" not in message, message
        assert len(message) < 300, message
    assert not marker.exists()


# --- rebuilding a run from its config.yaml ------------------------------------------------------


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def no_instantiate(monkeypatch):
    """Fails the test if Hydra's instantiate is called."""
    import hydra.utils

    calls = []
    monkeypatch.setattr(hydra.utils, "instantiate", lambda *a, **k: calls.append(a) or pytest.fail("instantiate ran"))
    return calls


def test_build_from_run_config_builds_allowed_classes(tmp_path, real_checkpoint):
    from interp.data import MNISTDataModule
    from interp.models import MnistMLP
    from interp.runs import ALLOWED_TARGETS, build_from_run_config, load_run_config

    assert {
        "interp.models.MnistMLP",
        "interp.models.FaceResNet50",
        "interp.data.MNISTDataModule",
        "interp.models.MnistCNN",
    } <= ALLOWED_TARGETS
    config = _write_config(
        tmp_path / "config.yaml",
        f"""
model: {{_target_: interp.models.MnistMLP, hidden: 32, dropout: 0.2, lr: 0.001}}
data: {{_target_: interp.data.MNISTDataModule, root: {tmp_path}, batch_size: 7, download: false}}
trainer: {{_target_: os.system, command: whatever}}
experiment: mnist_mlp
""",
    )
    model_class, datamodule = build_from_run_config(load_run_config(config))
    assert model_class is MnistMLP
    assert isinstance(datamodule, MNISTDataModule) and datamodule.batch_size == 7
    assert model_class.load_from_checkpoint(real_checkpoint, map_location="cpu").hparams.hidden == 32
    from omegaconf import OmegaConf

    model_class, datamodule = build_from_run_config(OmegaConf.create({"model": {"_target_": "interp.models.MnistMLP"}}))
    assert model_class is MnistMLP and datamodule is None


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        ("model: {_target_: shutil.copyfile, src: SRC, dst: DST}\n", "model._target_ 'shutil.copyfile'"),
        ("model: {_target_: os.system, command: 'touch DST'}\n", "model._target_ 'os.system'"),
        (
            "model: {_target_: interp.models.MnistMLP, hidden: {_target_: os.system, command: 'touch DST'}}\n",
            "model.hidden._target_ 'os.system'",
        ),
        (
            "model: {_target_: interp.models.MnistMLP}\n"
            "data: {_target_: interp.data.MNISTDataModule, root: {_target_: shutil.copyfile, src: SRC, dst: DST}}\n",
            "data.root._target_ 'shutil.copyfile'",
        ),
        (
            "model: {_target_: interp.models.MnistMLP}\n"
            "data: {_target_: interp.data.MNISTDataModule, x: [1, {_target_: os.system, command: 'touch DST'}]}\n",
            r"data.x\[1\]._target_ 'os.system'",
        ),
        ("model: {_target_: interp.data.MNISTDataModule}\n", "model._target_ 'interp.data.MNISTDataModule'"),
    ],
)
def test_build_from_run_config_refuses_other_targets(tmp_path, yaml_text, named, no_instantiate):
    from interp.runs import build_from_run_config, load_run_config

    dst = tmp_path / "pwned"
    text = yaml_text.replace("SRC", __file__).replace("DST", str(dst))
    config = _write_config(tmp_path / "config.yaml", text)
    with pytest.raises(UnsafeConfigError, match=named) as exc:
        build_from_run_config(load_run_config(config))
    assert "refusing" in one_line(exc)
    assert not dst.exists() and not no_instantiate


def test_allowed_but_absent_class_is_a_clear_error(monkeypatch):
    import interp.models
    from interp.runs import build_from_run_config

    monkeypatch.delattr(interp.models, "MnistCNN", raising=False)
    with pytest.raises(InterpError, match="interp.models.MnistCNN is not available") as exc:
        build_from_run_config({"model": {"_target_": "interp.models.MnistCNN"}})
    one_line(exc)


def test_diff_hparams_names_what_differs():
    from omegaconf import OmegaConf

    from interp.runs import diff_hparams

    saved = {"hidden": 512, "dropout": 0.2, "lr": 0.001, "optimizer": "adam", "input_shape": (1, 28, 28)}
    wanted = OmegaConf.create(
        {
            "_target_": "interp.models.MnistMLP",
            "hidden": 256,
            "dropout": 0.2,
            "lr": 1e-3,
            "schedule": "cosine",
            "input_shape": [1, 28, 28],
        }
    )
    assert diff_hparams(saved, wanted) == [
        "hidden: checkpoint 512, config 256",
        "schedule: checkpoint (absent), config 'cosine'",
    ]
    assert diff_hparams({"lr": 1}, {"lr": 1.0}) == []
    assert diff_hparams({"units": [1, 2]}, {"units": [1, 3]}) == ["units: checkpoint [1, 2], config [1, 3]"]
