"""Receptive-field boxes and crops: which input pixels a position of a layer's output sees, cut out of images.

A :class:`ReceptiveField` (what :func:`~interp.optvis.receptive.receptive_field` computes or measures) describes, per
axis, the box of input pixels that output position ``i`` depends on: ``[start + i * stride, start + i * stride +
size)``, clipped to the image (:func:`box_for`). :func:`crop` and :func:`crop_field` cut such boxes out of images, with
a fill value where a box reaches past the border, so that crops of one field share one size.

Pure torch: nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Box", "ReceptiveField", "box_for", "crop", "crop_field"]

Box = tuple[int, int, int, int]  # (top, left, bottom, right); bottom and right exclusive


@dataclass(frozen=True)
class ReceptiveField:
    """The input-pixel box of every output position of a layer, per axis (height, width).

    Output position ``(i, j)`` sees rows ``[start[0] + i*stride[0], start[0] + i*stride[0] + size[0])``
    and the same for columns with index 1, clipped to the image (:func:`box_for`).

    Attributes:
        size: field size in input pixels.
        stride: input pixels between neighbouring output positions.
        start: top-left corner of output position (0, 0), negative where padding hangs over.
        input_hw: the input's (height, width) the field was computed for.
        output_hw: the layer's output (height, width); ``(1, 1)`` for a layer without spatial axes.
        method: ``"analytic"`` (from the module chain), ``"gradient"`` (measured) or ``"dense"``
            (the layer has no spatial axes: every unit sees the whole input).
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    method: str = "analytic"

    def box(self, position: Sequence[int], clip: bool = True) -> Box:
        """Shorthand for ``box_for(self, position, self.input_hw, clip)``.

        Args:
            position: the output position ``(i, j)``.
            clip: clip the box to the image.

        Returns:
            ``(top, left, bottom, right)``, bottom/right exclusive.
        """
        return box_for(self, position, self.input_hw, clip=clip)


def box_for(
    rf: ReceptiveField, position: Sequence[int], image_hw: Sequence[int] | None = None, clip: bool = True
) -> Box:
    """The input box ``(top, left, bottom, right)`` (bottom/right exclusive) seen by output ``position``.

    Args:
        rf: the receptive field.
        position: the output position ``(i, j)`` (row, column of the layer's output map).
        image_hw: clip to this (height, width); default ``rf.input_hw``.
        clip: ``False`` returns the whole field, possibly reaching past the image (for :func:`crop`
            with padding, so every crop has the field's size).

    Returns:
        ``(top, left, bottom, right)``, bottom/right exclusive.

    Raises:
        ValueError: ``position`` is outside the layer's output.

    >>> rf = ReceptiveField(size=(5, 5), stride=(2, 2), start=(-1, -1), input_hw=(28, 28), output_hw=(14, 14))
    >>> box_for(rf, (0, 0), (28, 28)), box_for(rf, (0, 0), clip=False), box_for(rf, (13, 2))
    ((0, 0, 4, 4), (-1, -1, 4, 4), (25, 3, 28, 8))
    """
    i, j = (int(p) for p in position)
    oh, ow = rf.output_hw
    if not (0 <= i < oh and 0 <= j < ow):
        raise ValueError(f"position {(i, j)} is outside the layer's output of size {rf.output_hw}")
    top = rf.start[0] + i * rf.stride[0]
    left = rf.start[1] + j * rf.stride[1]
    bottom, right = top + rf.size[0], left + rf.size[1]
    if not clip:
        return top, left, bottom, right
    h, w = (int(v) for v in (image_hw if image_hw is not None else rf.input_hw))
    return max(top, 0), max(left, 0), min(bottom, h), min(right, w)


def crop(images: torch.Tensor, boxes: Sequence[Sequence[int]] | torch.Tensor, fill: float = 0.0) -> list[torch.Tensor]:
    """Cut box ``k`` out of image ``k``: a list of tensors ``[C, bottom - top, right - left]``.

    Boxes may reach past the image (``box_for(..., clip=False)``): those pixels are ``fill``, so
    unclipped boxes of one field give crops of one size, ready for ``torch.stack``.

    Args:
        images: ``[N, C, H, W]``, or one image ``[C, H, W]`` (then every box is cut from it).
        boxes: N boxes ``(top, left, bottom, right)``, bottom/right exclusive.
        fill: the value of pixels past the border.

    Returns:
        The crops, each ``[C, bottom - top, right - left]``.

    Raises:
        ValueError: images of another rank, a number of boxes other than the number of images, or an inverted box.

    >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
    >>> crop(x, [(-1, 2, 1, 5)])[0]
    tensor([[[0., 0., 0.],
             [2., 3., 0.]]])
    """
    boxes = [tuple(int(v) for v in b) for b in (boxes.tolist() if isinstance(boxes, torch.Tensor) else boxes)]
    if images.dim() == 3:
        images = images.unsqueeze(0).expand(len(boxes), *images.shape)
    if images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W] or [C, H, W], got shape {tuple(images.shape)}")
    if len(boxes) != images.shape[0]:
        raise ValueError(f"got {len(boxes)} boxes for {images.shape[0]} images")
    _, c, h, w = images.shape
    out = []
    for img, (top, left, bottom, right) in zip(images, boxes):
        if bottom < top or right < left:
            raise ValueError(f"empty or inverted box {(top, left, bottom, right)}")
        patch = images.new_full((c, bottom - top, right - left), fill)
        t, lf, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        if b > t and r > lf:
            patch[:, t - top : b - top, lf - left : r - left] = img[:, t:b, lf:r]
        out.append(patch)
    return out


def crop_field(
    images: torch.Tensor, rf: ReceptiveField, positions: Sequence[Sequence[int]], fill: float = 0.0
) -> torch.Tensor:
    """The whole field of ``positions[k]`` in ``images[k]``, ``fill`` outside the image.

    Args:
        images: ``[N, C, H, W]``, or one image ``[C, H, W]``.
        rf: the receptive field.
        positions: N output positions ``(i, j)``.
        fill: the value of pixels past the border.

    Returns:
        The crops, ``[N, C, size_h, size_w]``.

    Raises:
        ValueError: a position outside the layer's output, or a number of positions other than the number of images.

    >>> rf = ReceptiveField((3, 3), (1, 1), (-1, -1), (4, 4), (4, 4))
    >>> crop_field(torch.ones(2, 1, 4, 4), rf, [(0, 0), (2, 2)]).sum(dim=(1, 2, 3))
    tensor([4., 9.])
    """
    boxes = [box_for(rf, p, clip=False) for p in positions]
    return torch.stack(crop(images, boxes, fill=fill))
