"""Transformation robustness: random pad, jitter, scale and rotation applied at every step.

Each transform is a callable ``t(x, generator) -> x`` on a batch (B, C, H, W); all randomness
comes from the ``torch.Generator`` passed in (a CPU generator: the numbers drawn are scalars),
so one seed reproduces a render exactly. They are built from torch ops only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _choice(values: Sequence[float], generator: torch.Generator) -> float:
    return values[int(torch.randint(len(values), (1,), generator=generator))]


class Transform:
    """Base of the transforms: a callable ``t(x, generator) -> x`` on a batch (B, C, H, W), with a readable ``repr``."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Pad(Transform):
    """Pad every side by ``width`` pixels.

    Args:
        width: pixels added on each side.
        mode: as in ``F.pad`` (``"constant"``, ``"reflect"``, ``"replicate"``, ``"circular"``).
        value: the fill of ``"constant"`` padding.
    """

    def __init__(self, width: int, mode: str = "constant", value: float = 0.5):
        self.width, self.mode, self.value = int(width), mode, value

    def __call__(self, x, generator):
        if self.width == 0:
            return x
        w = (self.width,) * 4
        return F.pad(x, w, mode=self.mode, value=self.value) if self.mode == "constant" else F.pad(x, w, mode=self.mode)


class Jitter(Transform):
    """Random crop that shifts the image by up to ``d`` pixels (the image shrinks by ``d``).

    Args:
        d: the largest shift, in pixels (0: no change).
    """

    def __init__(self, d: int):
        self.d = int(d)

    def __call__(self, x, generator):
        if self.d <= 0:
            return x
        dy, dx = (int(v) for v in torch.randint(self.d + 1, (2,), generator=generator))
        h, w = x.shape[-2:]
        return x[..., dy : dy + h - self.d, dx : dx + w - self.d]


class Roll(Transform):
    """Circular shift by up to ``d`` pixels in each direction (keeps the size).

    Args:
        d: the largest shift, in pixels (0: no change).
    """

    def __init__(self, d: int):
        self.d = int(d)

    def __call__(self, x, generator):
        if self.d <= 0:
            return x
        dy, dx = (int(v) - self.d for v in torch.randint(2 * self.d + 1, (2,), generator=generator))
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


class RandomScale(Transform):
    """Resize by a factor drawn from ``scales`` (bilinear).

    Args:
        scales: the factors to draw from, uniformly.
    """

    def __init__(self, scales: Sequence[float]):
        self.scales = [float(s) for s in scales]

    def __call__(self, x, generator):
        s = _choice(self.scales, generator)
        if s == 1.0:
            return x
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RandomRotate(Transform):
    """Rotate by an angle in degrees drawn from ``angles`` (bilinear, border padding).

    Args:
        angles: the angles to draw from, uniformly.
    """

    def __init__(self, angles: Sequence[float]):
        self.angles = [float(a) for a in angles]

    def __call__(self, x, generator):
        angle = _choice(self.angles, generator)
        if angle == 0.0:
            return x
        theta = math.radians(angle)
        cos, sin = math.cos(theta), math.sin(theta)
        matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(matrix.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class CenterCropOrPad(Transform):
    """Bring the image back to ``size`` (H, W): centre crop or pad with ``value``.

    Put it last for models that need a fixed input size (an MLP).

    Args:
        size: the output (height, width).
        value: the fill of the padding.
    """

    def __init__(self, size: tuple[int, int], value: float = 0.0):
        self.size, self.value = (int(size[0]), int(size[1])), value

    def __call__(self, x, generator):
        th, tw = self.size
        h, w = x.shape[-2:]
        if h < th or w < tw:
            py, px = max(0, th - h), max(0, tw - w)
            x = F.pad(x, (px // 2, px - px // 2, py // 2, py - py // 2), value=self.value)
            h, w = x.shape[-2:]
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top : top + th, left : left + tw]


class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same generator.

    Args:
        transforms: the transforms.
    """

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, x, generator):
        for t in self.transforms:
            x = t(x, generator)
        return x


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Pad:
    """A :class:`Pad`.

    Args:
        width: pixels added on each side.
        mode: as in ``F.pad``.
        value: the fill of ``"constant"`` padding.

    Returns:
        The transform.
    """
    return Pad(width, mode, value)


def jitter(d: int) -> Jitter:
    """A :class:`Jitter`.

    Args:
        d: the largest shift, in pixels.

    Returns:
        The transform.
    """
    return Jitter(d)


def roll(d: int) -> Roll:
    """A :class:`Roll`.

    Args:
        d: the largest shift, in pixels.

    Returns:
        The transform.
    """
    return Roll(d)


def random_scale(scales: Sequence[float]) -> RandomScale:
    """A :class:`RandomScale`.

    Args:
        scales: the factors to draw from.

    Returns:
        The transform.
    """
    return RandomScale(scales)


def random_rotate(angles: Sequence[float]) -> RandomRotate:
    """A :class:`RandomRotate`.

    Args:
        angles: the angles in degrees to draw from.

    Returns:
        The transform.
    """
    return RandomRotate(angles)


def compose(*transforms) -> Compose:
    """A :class:`Compose` of the transforms given as arguments.

    Args:
        *transforms: the transforms, applied in order.

    Returns:
        The transform.
    """
    return Compose(transforms)


def standard_transforms() -> Compose:
    """Lucid's robustness set for natural images (about 224 px).

    Pad 12, jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4.

    Returns:
        The transforms.
    """
    return compose(
        pad(12, mode="constant", value=0.5),
        jitter(8),
        random_scale([1 + (i - 5) / 50 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    )


def small_image_transforms(size: tuple[int, int], background: float = 0.0) -> Compose:
    """For small, fixed-size inputs such as 28x28 digits.

    Pad 2, jitter 2, scale 0.95-1.05, rotate -5..5 degrees, then back to ``size`` (models that flatten need the exact
    size).

    Args:
        size: the images' (height, width).
        background: the fill of the padding.

    Returns:
        The transforms.
    """
    return compose(
        pad(2, value=background),
        jitter(2),
        random_scale([0.95, 0.975, 1.0, 1.025, 1.05]),
        random_rotate([-5, -2.5, 0, 0, 2.5, 5]),
        CenterCropOrPad(size, value=background),
    )


def default_transforms(shape: tuple[int, ...]) -> Compose:
    """:func:`small_image_transforms` below 64 px, :func:`standard_transforms` otherwise.

    Args:
        shape: the images' shape; its last two entries are (height, width).

    Returns:
        The transforms.
    """
    h, w = shape[-2:]
    if max(h, w) < 64:
        return small_image_transforms((h, w))
    return standard_transforms()
