"""Image files as ``load_image`` and ``ImageFolderDataset`` read them: every PIL mode at its real scale,
EXIF orientation, and every broken file or folder as one line (an InterpError)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import one_line
from interp.data.images import ImageFolderDataset, load_image
from interp.errors import (
    DataError,
    DataNotFoundError,
    ImageRangeError,
    ImageReadError,
)
from interp.optvis.inputs import pil_to_tensor


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


# --- EXIF orientation ----------------------------------------------------------------------------


def _blocks(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB picture of 8x8 blocks of random colours (JPEG keeps such blocks well)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo tagged Orientation=6 (camera turned: rotate 90 degrees clockwise to view)
    is loaded upright, by load_image and by the image-folder data set."""
    from interp.data.images import ImageFolderDataset, load_image

    stored = _blocks(32, 48)  # 32 high, 48 wide, as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif)

    upright = np.rot90(stored, k=-1).astype(np.float32) / 255  # clockwise: 48 high, 32 wide
    image = load_image(path)
    assert image.shape == (3, 48, 32)
    got = image.permute(1, 2, 0).numpy()
    assert np.abs(got - upright).mean() < 0.02
    # and it is not merely transposed or turned the other way
    assert np.abs(got - np.rot90(stored, k=1).astype(np.float32) / 255).mean() > 0.1
    item, _ = ImageFolderDataset(tmp_path)[0]
    assert torch.equal(item, image)
    # without the tag nothing turns
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=100, subsampling=0)
    assert load_image(tmp_path / "plain.jpg").shape == (3, 32, 48)
