"""Image loading, the VGGFace2 evaluation crop, the image-folder dataset and the shipped face photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from interp.data.images import (
    ImageFolderDataset,
    default_face_image_path,
    face_transform,
    load_image,
)


def _write(path, array: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(array, mode=mode).save(path)


def test_shipped_face_image():
    path = default_face_image_path()
    assert path.is_file() and path.suffix == ".png"
    assert path.stat().st_size < 150_000
    image = load_image(path)
    assert image.shape == (3, 256, 256) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.1  # a photo, not a flat image
    assert (path.parent / "README.md").is_file()


def test_load_image_scales_exact_pixels_to_unit_range(tmp_path):
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    pixels[1, 2] = (0, 51, 255)
    _write(tmp_path / "p.png", pixels)
    image = load_image(tmp_path / "p.png")
    assert image.shape == (3, 2, 3)
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(image[:, 1, 2], torch.tensor([0.0, 0.2, 1.0]))
    assert image[:, 0, 1].sum() == 0


def test_load_image_modes_and_alpha(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    _write(tmp_path / "gray.png", gray)
    rgb = load_image(tmp_path / "gray.png")
    assert rgb.shape == (3, 3, 4)
    assert torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])
    single = load_image(tmp_path / "gray.png", mode="L")
    assert single.shape == (1, 3, 4)
    torch.testing.assert_close(single[0], torch.from_numpy(gray).float() / 255)
    rgba = np.full((2, 2, 4), 200, np.uint8)
    rgba[..., 3] = 0
    _write(tmp_path / "rgba.png", rgba)
    assert load_image(tmp_path / "rgba.png").shape == (3, 2, 2)
    with pytest.raises(ValueError, match="mode"):
        load_image(tmp_path / "gray.png", mode="CMYK")


def test_load_image_resizes(tmp_path):
    _write(tmp_path / "wide.png", np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8))
    assert load_image(tmp_path / "wide.png", size=20).shape == (3, 20, 40)  # shorter side
    assert load_image(tmp_path / "wide.png", size=(10, 30)).shape == (3, 10, 30)
    resized = load_image(tmp_path / "wide.png", size=33)
    assert 0.0 <= resized.min() and resized.max() <= 1.0


def test_load_image_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    fake = tmp_path / "weights.png"
    fake.write_text("not an image\n")
    with pytest.raises(ValueError, match="weights.png is not an image"):
        load_image(fake)
    _write(tmp_path / "ok.jpg", np.zeros((64, 64, 3), np.uint8))
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_face_transform_is_resize_256_then_centre_crop_224():
    transform = face_transform()
    image = torch.rand(3, 300, 400)
    out = transform(image)
    assert out.shape == (3, 224, 224)
    batch = transform(torch.rand(2, 3, 500, 256))
    assert batch.shape == (2, 3, 224, 224)
    # At 256x256 the resize is the identity, so the result is the centre 224 of the image.
    face = load_image(default_face_image_path())
    torch.testing.assert_close(transform(face), face[:, 16:240, 16:240], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="crop"):
        face_transform(resize_to=200, crop=224)


def test_image_folder_dataset_lists_sorted_images(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "b").mkdir()
    for name in ("b/z.webp", "a.jpg", "C.PNG", "b/a.bmp", "d.jpeg"):
        _write(tmp_path / name, rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("skip me")
    (tmp_path / "image.png.bak").write_bytes(b"")
    dataset = ImageFolderDataset(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in dataset.paths]
    assert names == ["C.PNG", "a.jpg", "b/a.bmp", "b/z.webp", "d.jpeg"]
    image, index = dataset[2]
    assert index == 2 and image.shape == (3, 30, 40)
    flat = ImageFolderDataset(tmp_path, recursive=False)
    assert len(flat) == 3
    cropped = ImageFolderDataset(tmp_path, transform=face_transform(resize_to=32, crop=24))
    images, indices = next(iter(DataLoader(cropped, batch_size=5)))
    assert images.shape == (5, 3, 24, 24) and indices.tolist() == [0, 1, 2, 3, 4]


def test_image_folder_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderDataset(tmp_path)
