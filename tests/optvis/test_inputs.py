"""The image contract of interp.optvis.inputs: ``as_image_batch`` takes the forms the docs promise
(CHW, BCHW, uint8, HW and HWC arrays, PIL images) and refuses the rest in one line; ``check_image_range``
guards what a data loader yields."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import one_line
from interp.errors import ImageRangeError, InterpError
from interp.optvis.inputs import as_image_batch, check_image_range


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)


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
