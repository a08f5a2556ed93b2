"""Building blocks of the face-api.js ports (:mod:`interp.models.faceapi`): preprocessing and convolutions.

* :class:`FaceApiPreprocess`: what face-api's ``NetInput.toBatchTensor`` and ``normalize`` do to a tensor (pad to
  a square, resize with :func:`tf_resize_bilinear`, subtract :data:`FACE_API_MEAN_RGB`, divide by 255);
* :class:`Conv2dSame`: ``nn.Conv2d`` with TensorFlow's ``same`` padding (more at the bottom and right);
* :class:`SeparableConv2d`: a depthwise 3x3 then a pointwise 1x1 convolution, two real ``nn.Conv2d``.

The per-channel :class:`~interp.models.faceapi.Scale` and the residual and dense blocks stay in
:mod:`interp.models.faceapi`, where the LRP canonizers of :mod:`interp.optvis.lrp` look for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.models.tfjs import TfjsWeights

__all__ = ["FACE_API_MEAN_RGB", "Conv2dSame", "FaceApiPreprocess", "SeparableConv2d", "tf_resize_bilinear"]

FACE_API_MEAN_RGB = (122.782, 117.001, 104.298)
"""Mean RGB on the 0-255 scale that face-api subtracts before dividing by 255."""


def tf_resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """TensorFlow's ``resizeBilinear(alignCorners=false, halfPixelCenters=false)`` of (N, C, H, W).

    Output pixel ``r`` samples source row ``r * H / size[0]`` (no half-pixel offset), interpolated
    between its floor and ceil rows (clamped at the last row); likewise for columns. The arithmetic
    is done in float64 and rounded to the input's dtype, as the TensorFlow.js CPU kernel does.

    Args:
        x: images (N, C, H, W).
        size: output (height, width).

    Returns:
        The resized images, same dtype as ``x``.
    """

    def taps(old: int, new: int) -> tuple[Tensor, Tensor, Tensor]:
        ratio = old / new
        src = np.arange(new, dtype=np.float64) * ratio
        lo = np.maximum(0, np.floor(src)).astype(np.int64)
        hi = np.minimum(old - 1, np.ceil(src)).astype(np.int64)
        frac = src - lo
        return torch.from_numpy(lo), torch.from_numpy(hi), torch.from_numpy(frac)

    height, width = x.shape[-2:]
    r0, r1, rf = (t.to(x.device) for t in taps(height, size[0]))
    c0, c1, cf = (t.to(x.device) for t in taps(width, size[1]))
    x64 = x.double()
    top, bottom = x64[..., r0, :], x64[..., r1, :]
    top = top[..., c0] + (top[..., c1] - top[..., c0]) * cf
    bottom = bottom[..., c0] + (bottom[..., c1] - bottom[..., c0]) * cf
    out = top + (bottom - top) * rf.reshape(-1, 1)
    return out.to(x.dtype)


class FaceApiPreprocess(nn.Module):
    """RGB in [0, 1] -> face-api's network input: pad to square, resize, subtract mean, divide by 255.

    As face-api's ``NetInput.toBatchTensor(size, isCenterInputs=true)`` followed by
    ``normalize(x, meanRgb).div(255)``: the shorter side is padded with zeros (on the 0-255 scale,
    i.e. black) to a square, the extra pixel of an odd difference going to the end (bottom or
    right); a square of another size is resized with :func:`tf_resize_bilinear`; the mean is
    subtracted. At the net's size only the normalization happens.

    Args:
        size: the network's input size (150 or 112).
        mean_rgb: mean R, G, B on the 0-255 scale.
        resize: ``False`` skips the padding and the resize: images of any size and shape are only
            normalized, and the convolutions see them at their own resolution (for DeepDream on
            photos and its tiles; a net that ends in a fixed-size pool needs ``True``).
    """

    mean: Tensor

    def __init__(self, size: int, mean_rgb: Sequence[float] = FACE_API_MEAN_RGB, resize: bool = True):
        super().__init__()
        self.size = int(size)
        self.resize = bool(resize)
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images shaped (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        x = x * 255.0
        if not self.resize:
            return (x - self.mean) / 255.0
        height, width = x.shape[-2:]
        if height != width:
            diff = abs(height - width)
            after = (diff + 1) // 2  # JavaScript Math.round(diff * 0.5)
            before = diff - after
            pad = (before, after, 0, 0) if height > width else (0, 0, before, after)
            x = F.pad(x, pad)
        if x.shape[-1] != self.size:
            x = tf_resize_bilinear(x, (self.size, self.size))
        return (x - self.mean) / 255.0

    def extra_repr(self) -> str:
        mean = ", ".join(f"{m:g}" for m in self.mean.flatten().tolist())
        return f"size={self.size}, mean_rgb=({mean}), scale=1/255" + ("" if self.resize else ", resize=False")


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``same`` padding: output ``ceil(in / stride)``.

    The total padding ``max((out - 1) * stride + kernel - in, 0)`` is split with the extra pixel at
    the bottom / right (at stride 2 on an even size: nothing on top, one row at the bottom), which
    a symmetric ``padding=`` cannot express. ``padding`` stays 0; the zeros are added in ``forward``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: the stride.
        **kwargs: passed to ``nn.Conv2d`` (``groups``, ``bias``, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, **kwargs: Any):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, **kwargs)

    def forward(self, input: Tensor) -> Tensor:
        pads: list[int] = []
        for size, k, s in zip(reversed(input.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return self._conv_forward(F.pad(input, pads), self.weight, self.bias)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (``groups=C``, no bias, TensorFlow ``same`` padding) then pointwise 1x1 with bias.

    As ``tf.separableConv2d(x, depthwise, pointwise, stride, 'same')`` plus the bias.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise convolution (1 or 2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.depthwise: nn.Conv2d
        if stride == 1:
            self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        else:
            self.depthwise = Conv2dSame(in_channels, in_channels, 3, stride=stride, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


def _load(weights: TfjsWeights, name: str, target: Tensor, kind: str) -> None:
    """Copy TensorFlow tensor ``name`` into ``target`` (``conv``: HWIO->OIHW, ``depthwise``:
    HWC1->C1HW, ``dense``: (in, out)->(out, in), ``vector``: as is), checking the shape."""
    expected: tuple[int, ...]
    order: tuple[int, ...]
    if kind in ("conv", "depthwise"):
        o, i, h, w = target.shape
        expected = (h, w, i, o) if kind == "conv" else (h, w, o, i)
        order = (3, 2, 0, 1) if kind == "conv" else (2, 3, 0, 1)
    elif kind == "dense":
        expected, order = (target.shape[1], target.shape[0]), (1, 0)
    else:
        expected, order = tuple(target.shape), tuple(range(target.ndim))
    array = weights.take(name, expected)
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(array.transpose(order))))
