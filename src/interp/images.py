"""Pictures from tensors: the one PNG encoder, the one conversion to 8 bits, and the drawing of grids,
titled rows and columns, panels, heatmaps and legends.

Signed maps are coloured by the one diverging colour map, :func:`interp.optvis.templates.diverging_colormap`
(blue negative, white zero, red positive). The report (:mod:`interp.report`) and the unit atlas
(:mod:`interp.atlas`) both draw and encode through this module.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from interp.optvis.templates import colorbar, diverging_colormap

__all__ = [
    "PANEL_TITLES",
    "PNG_LEVEL",
    "colour_legend",
    "diverging_colormap",
    "draw_boxes",
    "encode_png",
    "font",
    "grid",
    "heatmap_overlay",
    "labelled_grid",
    "pil_to_tensor",
    "signed_with_legend",
    "tensor_to_pil",
    "titled_column",
    "titled_row",
    "to_rgb",
    "to_uint8",
    "unit_panel",
    "upscale",
    "write_png",
]

PANEL_TITLES = ("Maximal activation examples", "Visualization by optimization")

#: zlib level of the PNGs written: 3 encodes about twice as fast as 6 on panels, for files about a
#: third larger (flat backgrounds, text, pixel art); on small and smooth pictures the two are alike.
PNG_LEVEL = 3


# --- pixels ---------------------------------------------------------------------------------------


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] or [C, H, W] with C in {1, 3} (or more: first three) -> same rank with C = 3."""
    squeeze = images.dim() == 3
    x = images.unsqueeze(0) if squeeze else images
    x = x.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 2:
        x = torch.cat([x, x[:, :1]], 1)
    elif x.shape[1] > 3:
        x = x[:, :3]
    return x[0] if squeeze else x


def to_uint8(images: torch.Tensor, grey: bool = False) -> np.ndarray:
    """Images in [0, 1] as 8-bit pixels, rounded to nearest (halves up) and clamped to [0, 255].

    ``[C, H, W]`` -> ``[H, W, 3]`` and ``[N, C, H, W]`` -> ``[N, H, W, 3]`` (channels as :func:`to_rgb`);
    an ``[H, W]`` map is one channel. With ``grey``, one-channel images stay one channel: ``[H, W]``
    or ``[N, H, W]`` (a third of the bytes to encode).
    """
    x = images.detach()
    if x.dim() == 2:
        x = x[None]
    batch = x.dim() == 4
    if not batch:
        x = x[None]
    if grey and x.shape[1] == 1:
        x = x.float().cpu()
    else:
        x = to_rgb(x)
    pixels = x.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)  # a copy: the input is left alone
    pixels = pixels[:, 0] if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1)
    arr = pixels.contiguous().numpy()
    return arr if batch else arr[0]


# --- PNG --------------------------------------------------------------------------------------------

_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray | torch.Tensor, level: int = PNG_LEVEL) -> bytes:
    """A PNG file of ``image``: a uint8 array ``[H, W]`` (grey) or ``[H, W, C]`` (C of 1 to 4), or a
    float tensor in [0, 1] (``[C, H, W]``, converted by :func:`to_uint8`: RGB).

    Written directly with zlib, each image with no filter or the "up" filter, whichever leaves the
    smaller bytes (PNG's own heuristic): on small pictures several times faster than Pillow, on
    smooth 256 px ones as small, and zlib releases the GIL, so a thread pool overlaps encodings.
    """
    arr = to_uint8(image) if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in _COLOUR_TYPE):
        raise ValueError(f"expected a uint8 [H, W] or [H, W, 1-4] array, got {arr.dtype} {tuple(arr.shape)}")
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    rows = np.ascontiguousarray(arr).reshape(h, w * channels)
    up = rows.copy()
    up[1:] -= rows[:-1]  # wraps around modulo 256, as PNG's filters do
    use_up = np.abs(up.view(np.int8)).sum(dtype=np.int64) < np.abs(rows.view(np.int8)).sum(dtype=np.int64)
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = 2 if use_up else 0
    raw[:, 1:] = up if use_up else rows
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def write_png(image: np.ndarray | torch.Tensor, path: Path, level: int = PNG_LEVEL) -> None:
    """:func:`encode_png` of ``image`` written to ``path``."""
    with open(path, "wb") as f:
        f.write(encode_png(image, level))


# --- Pillow ---------------------------------------------------------------------------------------


def font(size: int):
    """Pillow's default font at ``size`` px (its bitmap font where Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support for sized default fonts
        return ImageFont.load_default()


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(img))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


# --- assembly -------------------------------------------------------------------------------------


def upscale(images: torch.Tensor, min_size: int = 112) -> torch.Tensor:
    """Nearest-neighbour upscaling by an integer factor until the shorter side is >= ``min_size``."""
    squeeze = images.dim() == 3
    x = images.unsqueeze(0) if squeeze else images
    factor = max(1, math.ceil(min_size / min(x.shape[-2:])))
    if factor > 1:
        x = F.interpolate(x, scale_factor=factor, mode="nearest")
    return x[0] if squeeze else x


def grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0, min_size: int = 0
) -> torch.Tensor:
    """A [3, H, W] grid of ``images`` ([N, C, h, w] in [0, 1]), ``nrow`` per row (default square)."""
    x = to_rgb(images).clamp(0, 1)
    if min_size:
        x = upscale(x, min_size)
    nrow = nrow or max(1, math.ceil(math.sqrt(x.shape[0])))
    return make_grid(x, nrow=nrow, padding=padding, pad_value=pad_value)


def titled_row(
    images: Sequence[torch.Tensor], titles: Sequence[str], title: str | None = None, gap: int = 16, font_size: int = 14
) -> torch.Tensor:
    """Images side by side ([3, H, W] each; shorter ones are scaled to the tallest), each with a
    caption above it, and an optional overall title: a [3, H, W] tensor on white."""
    height = max(int(i.shape[-2]) for i in images)
    scaled = []
    for img in images:
        img = to_rgb(img)
        if img.shape[-2] != height:
            w = round(img.shape[-1] * height / img.shape[-2])
            mode = "nearest" if img.shape[-2] < height else "bilinear"
            img = F.interpolate(img[None], size=(height, w), mode=mode)[0]
        scaled.append(img.clamp(0, 1))
    small, big = font(font_size), font(font_size + 2)
    caption_h = font_size + 10
    title_h = font_size + 14 if title else 0
    width = sum(int(i.shape[-1]) for i in scaled) + gap * (len(scaled) + 1)
    canvas = Image.new("RGB", (width, title_h + caption_h + height + gap), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((width // 2, 6), title, fill="black", font=big, anchor="mt")
    x = gap
    for img, caption in zip(scaled, titles):
        w = int(img.shape[-1])
        draw.text((x + w // 2, title_h + 4), caption, fill="black", font=small, anchor="mt")
        canvas.paste(tensor_to_pil(img), (x, title_h + caption_h))
        x += w + gap
    return pil_to_tensor(canvas)


def unit_panel(
    examples_grid: torch.Tensor, optimized: torch.Tensor, title: str | None = None, titles: Sequence[str] = PANEL_TITLES
) -> torch.Tensor:
    """The headline picture: a unit's maximal-activation examples on the left, the input optimized
    for the unit on the right, titled ``Maximal activation examples | Visualization by optimization``."""
    left = upscale(examples_grid, 256)
    right = upscale(to_rgb(optimized), left.shape[-2])
    return titled_row([left, right], titles, title=title)


def titled_column(
    images: Sequence[torch.Tensor], titles: Sequence[str], gap: int = 8, font_size: int = 14
) -> torch.Tensor:
    """Images one above the other ([3, H, W] each, left-aligned on white), each with its caption
    above it: a [3, H, W] tensor."""
    pictures = [to_rgb(img).clamp(0, 1) for img in images]
    small = font(font_size)
    caption_h = font_size + 8
    width = max(int(p.shape[-1]) for p in pictures) + 2 * gap
    height = sum(int(p.shape[-2]) + caption_h + gap for p in pictures) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = gap
    for picture, caption in zip(pictures, titles):
        draw.text((gap, y), caption, fill="black", font=small)
        canvas.paste(tensor_to_pil(picture), (gap, y + caption_h))
        y += int(picture.shape[-2]) + caption_h + gap
    return pil_to_tensor(canvas)


def labelled_grid(
    images: torch.Tensor, labels: Sequence[str], nrow: int | None = None, min_size: int = 56, font_size: int = 12
) -> torch.Tensor:
    """A grid of ``images`` ([N, C, h, w] in [0, 1]) with ``labels[i]`` under image ``i``: [3, H, W]."""
    x = upscale(to_rgb(images).clamp(0, 1), min_size)
    n, _, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    pad, label_h = 4, font_size + 6
    canvas = Image.new("RGB", (nrow * (w + pad) + pad, rows * (h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    small = font(font_size)
    for i in range(n):
        r, c = divmod(i, nrow)
        left, top = pad + c * (w + pad), pad + r * (h + label_h + pad)
        canvas.paste(tensor_to_pil(x[i]), (left, top))
        draw.text((left + w // 2, top + h + 2), str(labels[i]), fill="black", font=small, anchor="mt")
    return pil_to_tensor(canvas)


def draw_boxes(
    images: torch.Tensor, boxes: Sequence[Sequence[int]], color: Sequence[float] = (1.0, 0.55, 0.0), width: int = 1
) -> torch.Tensor:
    """RGB copies of ``images`` ([N, C, H, W]) with box ``k`` (top, left, bottom, right; bottom and
    right exclusive) outlined on image ``k``."""
    out = to_rgb(images).clone()
    c = torch.tensor(color, dtype=out.dtype).view(3, 1)
    for k, (top, left, bottom, right) in enumerate(boxes):
        h, w = out.shape[-2:]
        top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        if bottom <= top or right <= left:
            continue
        for t in range(width):
            out[k, :, min(top + t, h - 1), left:right] = c
            out[k, :, max(bottom - 1 - t, 0), left:right] = c
            out[k, :, top:bottom, min(left + t, w - 1)] = c
            out[k, :, top:bottom, max(right - 1 - t, 0)] = c
    return out


# --- signed maps ------------------------------------------------------------------------------------


def heatmap_overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Attribution maps ([N, C, H, W] or [N, H, W]) over images ([N, C, H, W], darkened): each pixel
    painted with the end colour of :func:`diverging_colormap` for its sign (red positive, blue
    negative) at opacity ``alpha * |value| ** 1.5`` (zero: transparent; weak values faint, as strong as
    the red and blue of the mixing this replaced); each map scaled by its own largest absolute value.
    Returns [N, 3, H, W]."""
    m = maps.detach().float().cpu()
    if m.dim() == 4:
        m = m.sum(1)
    scale = m.abs().flatten(1).max(1).values.clamp(min=1e-12).reshape(-1, 1, 1)
    m = (m / scale).clamp(-1, 1)
    color = diverging_colormap(m.sign().unsqueeze(1), vmax=1.0)  # [N, 3, H, W]: the map's end colours
    base = to_rgb(images).clamp(0, 1) * 0.6
    weight = m.abs().pow(1.5).unsqueeze(1) * alpha
    return (base * (1 - weight) + color * weight).clamp(0, 1)


def signed_with_legend(values: torch.Tensor, size: int = 256, bar_width: int = 14) -> torch.Tensor:
    """A signed map ([H, W] or [1, H, W]) in a diverging colour scale (blue negative, white zero, red
    positive; symmetric) beside a colour bar labelled with its +-range: a [3, H', W'] image."""
    m = values.detach().float().cpu().reshape(values.shape[-2], values.shape[-1])
    vmax = float(m.abs().max()) or 1.0
    img = upscale(diverging_colormap(m, vmax=vmax), size)
    h = int(img.shape[-2])
    bar = colorbar(vmax, height=h, width=bar_width)
    small = font(12)
    label_w = 52
    canvas = Image.new("RGB", (int(img.shape[-1]) + 8 + bar_width + label_w, h), "white")
    canvas.paste(tensor_to_pil(img), (0, 0))
    x = int(img.shape[-1]) + 8
    canvas.paste(tensor_to_pil(bar), (x, 0))
    draw = ImageDraw.Draw(canvas)
    for text, y, anchor in ((f"+{vmax:.2g}", 0, "lt"), ("0", h // 2, "lm"), (f"-{vmax:.2g}", h, "lb")):
        draw.text((x + bar_width + 4, y), text, fill="black", font=small, anchor=anchor)
    return pil_to_tensor(canvas)


def colour_legend(height: int, top: str = "+max", bottom: str = "-max", bar_width: int = 14) -> torch.Tensor:
    """A vertical diverging colour bar (red at the top, white zero in the middle, blue at the
    bottom) with its labels: a [3, height, W] image."""
    bar = colorbar(1.0, height=height, width=bar_width)
    small = font(12)
    canvas = Image.new("RGB", (bar_width + 48, height), "white")
    canvas.paste(tensor_to_pil(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for text, y, anchor in ((top, 0, "lt"), ("0", height // 2, "lm"), (bottom, height, "lb")):
        draw.text((bar_width + 4, y), text, fill="black", font=small, anchor=anchor)
    return pil_to_tensor(canvas)
