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


# --- interp.images: the one PNG encoder, the conversion to 8 bits, the colour map ----------------------


def test_encode_png_decodes_to_the_same_pixels():
    import io

    from interp.images import encode_png

    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), 8, 0), 8, 1)  # the "up" filter
    cases = [
        np.arange(35, dtype=np.uint8).reshape(5, 7),  # grey
        rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),  # RGB noise: no filter
        smooth,
        rng.integers(0, 256, (6, 2, 4), dtype=np.uint8),  # RGBA
        np.zeros((1, 1), np.uint8),
    ]
    for arr in cases:
        with Image.open(io.BytesIO(encode_png(arr))) as img:
            img.load()
            assert img.mode == ("L" if arr.ndim == 2 else {3: "RGB", 4: "RGBA"}[arr.shape[2]])
            back = np.asarray(img)
        assert back.shape == arr.shape and (back == arr).all()
    for level in (1, 9):
        assert (np.asarray(Image.open(io.BytesIO(encode_png(smooth, level=level)))) == smooth).all()
    # A float tensor in [0, 1] is converted first (RGB, rounded to nearest).
    t = torch.tensor([[[0.0, 0.5, 1.0]]])
    assert (np.asarray(Image.open(io.BytesIO(encode_png(t)))) == [[[0] * 3, [128] * 3, [255] * 3]]).all()
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2, 5), np.uint8))


def test_to_uint8_rounds_to_nearest_and_clamps():
    from interp.images import to_uint8

    x = torch.tensor([-0.5, 0.0, 0.49 / 255, 0.51 / 255, 0.5, 254.49 / 255, 254.51 / 255, 1.0, 7.0]).reshape(1, 1, 9)
    expected = [0, 0, 0, 1, 128, 254, 255, 255, 255]
    rgb = to_uint8(x)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 9, 3)
    assert rgb[0, :, 0].tolist() == expected and (rgb[..., 0] == rgb[..., 2]).all()  # grey made RGB
    grey = to_uint8(x, grey=True)
    assert grey.shape == (1, 9) and grey[0].tolist() == expected
    assert to_uint8(x[0]).shape == (1, 9, 3)  # an [H, W] map
    batch = torch.rand(4, 3, 5, 6)
    out = to_uint8(batch)
    assert out.shape == (4, 5, 6, 3)
    assert (out[2] == to_uint8(batch[2])).all()
    assert to_uint8(torch.rand(4, 1, 5, 6), grey=True).shape == (4, 5, 6)
    assert to_uint8(torch.rand(5, 2, 3)).shape == (2, 3, 3) and to_uint8(torch.rand(2, 2, 3)).shape == (2, 3, 3)
    before = batch.clone()
    to_uint8(batch)
    assert torch.equal(batch, before)  # the input is left alone


def test_the_one_colour_map_anchors_and_its_users():
    from interp.atlas import diverging
    from interp.images import heatmap_overlay
    from interp.optvis.templates import NEGATIVE, POSITIVE, diverging_colormap

    rgb = diverging_colormap(torch.tensor([[-3.0, 0.0, 3.0]]), vmax=3.0)
    torch.testing.assert_close(rgb[:, 0, 0], torch.tensor(NEGATIVE))  # blue
    torch.testing.assert_close(rgb[:, 0, 1], torch.ones(3))  # white
    torch.testing.assert_close(rgb[:, 0, 2], torch.tensor(POSITIVE))  # red
    assert rgb[2, 0, 0] > rgb[0, 0, 0] and rgb[0, 0, 2] > rgb[2, 0, 2]
    # The atlas draws with the same map.
    torch.testing.assert_close(diverging(torch.tensor([[-3.0, 0.0, 3.0]]), 3.0), rgb)
    # The overlay: zero is transparent (the darkened image shows), the ends paint red and blue.
    image = torch.full((1, 3, 1, 3), 0.5)
    over = heatmap_overlay(image, torch.tensor([[[-2.0, 0.0, 2.0]]]))
    torch.testing.assert_close(over[0, :, 0, 1], torch.full((3,), 0.3))
    torch.testing.assert_close(over[0, :, 0, 2], 0.15 * 0.3 + 0.85 * torch.tensor(POSITIVE))
    torch.testing.assert_close(over[0, :, 0, 0], 0.15 * 0.3 + 0.85 * torch.tensor(NEGATIVE))
    assert over[0, 0, 0, 2] > over[0, 2, 0, 2] and over[0, 2, 0, 0] > over[0, 0, 0, 0]


def test_the_reporters_one_private_tensorboard_call(tmp_path):
    """``SummaryWriter`` has no public method that writes a ready summary; the Reporter's one private call
    (``_get_file_writer``) is in ``event_file_writer``. This fails when torch renames or changes it."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.writer import FileWriter

    from interp.report import event_file_writer

    writer = SummaryWriter(tmp_path)
    try:
        events = event_file_writer(writer)
        assert isinstance(events, FileWriter) and callable(events.add_summary)
    finally:
        writer.close()
    assert event_file_writer(object()) is None  # other writers: add_image
