"""interp.images: ``encode_png`` decodes to the same pixels, ``to_uint8`` rounds to nearest and clamps, and the
one diverging colour map (its anchors and every user of it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


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
