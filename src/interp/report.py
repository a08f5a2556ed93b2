"""Turning interpretation results into pictures, and writing them to TensorBoard and PNG files.

Algorithms (``interp.optvis``) return tensors; this module assembles grids and panels and hands
them to a :class:`Reporter`, which writes each image to the run's TensorBoard logger (when there is
one) and as ``<run>/interp/<tag>.png``. Only global rank zero writes.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

log = logging.getLogger(__name__)

PANEL_TITLES = ("Maximal activation examples", "Visualization by optimization")


# --- image assembly -----------------------------------------------------------------------------


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


def inputs_at(dataset, indices) -> torch.Tensor:
    """The inputs of ``dataset`` at ``indices`` stacked as one float tensor (items are inputs or
    tuples whose first element is the input)."""
    items = [dataset[int(i)] for i in indices]
    return torch.stack(
        [torch.as_tensor(i[0] if isinstance(i, (tuple, list)) else i, dtype=torch.float32) for i in items]
    )


def topk_images(topk, dataset, unit_row: int) -> torch.Tensor:
    """The examples of row ``unit_row`` of a :class:`~interp.optvis.topk.TopK`, fetched from
    ``dataset`` (missing ones, index -1, left out)."""
    return inputs_at(dataset, [i for i in topk.indices[unit_row].tolist() if i >= 0])


def topk_grid(topk, dataset, unit_row: int, nrow: int | None = None, min_size: int = 0) -> torch.Tensor:
    """Grid of one unit's maximal-activation examples (values are in ``topk.values[unit_row]``)."""
    return grid(topk_images(topk, dataset, unit_row), nrow=nrow, min_size=min_size)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support for sized default fonts
        return ImageFont.load_default()


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """A [C, H, W] image in [0, 1] as RGB uint8 [H, W, 3], rounded to nearest (one pass over a copy)."""
    return to_rgb(img).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(img).numpy())


# zlib level of the PNGs written: 3 encodes about twice as fast as PIL's default (6), for files
# about a third larger on these pictures (flat backgrounds, text, pixel art).
PNG_LEVEL = 3


def encode_png(img: torch.Tensor) -> tuple[bytes, int, int]:
    """``img`` ([C, H, W] in [0, 1]) as PNG bytes, with its width and height."""
    arr = to_uint8(img).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue(), int(arr.shape[1]), int(arr.shape[0])


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


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
    font, big = _font(font_size), _font(font_size + 2)
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
        draw.text((x + w // 2, title_h + 4), caption, fill="black", font=font, anchor="mt")
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


def heatmap_overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Attribution maps ([N, C, H, W] or [N, H, W]) over images: red for positive, blue for
    negative, each map scaled by its own largest absolute value. Returns [N, 3, H, W]."""
    m = maps.detach().float().cpu()
    if m.dim() == 4:
        m = m.sum(1)
    scale = m.abs().flatten(1).max(1).values.clamp(min=1e-12).reshape(-1, 1, 1)
    m = (m / scale).clamp(-1, 1)
    color = torch.stack([m.clamp(min=0), torch.zeros_like(m), (-m).clamp(min=0)], 1)
    base = to_rgb(images).clamp(0, 1) * 0.6
    weight = m.abs().sqrt().unsqueeze(1) * alpha
    return (base * (1 - weight) + color * weight).clamp(0, 1)


# --- writing --------------------------------------------------------------------------------------


def tag_to_path(root: Path, tag: str, suffix: str = ".png") -> Path:
    """The file of ``tag`` under ``root``: ``interp/inversion/features.3`` -> ``root/inversion/features.3.png``
    (the suffix is appended, so dotted layer names never collide)."""
    parts = [p for p in tag.split("/") if p]
    if parts and parts[0] == "interp":
        parts = parts[1:]
    if not parts:
        raise ValueError(f"empty tag {tag!r}")
    return root.joinpath(*parts[:-1], parts[-1] + suffix)


def described_image(tag: str, png: bytes, width: int, height: int, description: str | None) -> Any:
    """A TensorBoard image summary of an encoded PNG in the images plugin's own format (a tensor of
    width, height and the PNG, with the plugin's metadata), so that ``description`` reaches the
    dashboard."""
    from tensorboard.compat.proto import types_pb2
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.image import metadata as image_metadata

    tensor = TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=3)]),
        string_val=[str(width).encode(), str(height).encode(), png],
    )
    metadata = image_metadata.create_summary_metadata(display_name=tag, description=description or "")
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])


class Reporter:
    """Writes images to a TensorBoard ``SummaryWriter`` (if any) and as PNGs under
    ``<run_dir>/interp/``, scalars to every logger, and result tensors as ``.pt`` files.

    Args:
        run_dir: the run folder; PNGs go to ``run_dir/interp/<tag>.png``.
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_image``), or
            ``None`` for PNGs only.
        loggers: objects with ``log_metrics(dict, step)`` (Lightning loggers: TensorBoard, CSV, ...)
            that receive the scalars; without any, scalars go to ``writer``.
        enabled: false on ranks other than zero: nothing is written.
    """

    _warned_no_tb = False

    def __init__(self, run_dir: str | Path, writer: Any = None, enabled: bool = True, loggers: Sequence[Any] = ()):
        self.run_dir = Path(run_dir)
        self.png_dir = self.run_dir / "interp"
        self.writer = writer
        self.loggers = list(loggers)
        self.enabled = enabled
        self.written: list[Path] = []
        self._folders: set[Path] = set()  # folders made already (a mkdir per image costs ms on slow disks)
        if writer is None and enabled and not Reporter._warned_no_tb:
            Reporter._warned_no_tb = True
            log.warning(
                "no TensorBoard logger on this run; interpretation images are written as PNG files only (under %s)",
                self.png_dir,
            )

    @classmethod
    def for_trainer(cls, trainer: Any) -> Reporter:
        """The reporter of a Lightning trainer: images to its first TensorBoard logger, scalars to
        all its loggers, PNGs in that logger's log dir."""
        from lightning.pytorch.loggers import TensorBoardLogger

        writer, run_dir = None, None
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment if trainer.is_global_zero else None
                run_dir = logger.log_dir
                break
        if run_dir is None:
            run_dir = trainer.log_dir or trainer.default_root_dir
        return cls(run_dir, writer, enabled=trainer.is_global_zero, loggers=trainer.loggers)

    def image(self, tag: str, img: torch.Tensor, step: int = 0, description: str | None = None) -> Path | None:
        """Log a [3, H, W] (or [1, H, W]) image in [0, 1] under ``tag`` (with ``description``, shown
        by TensorBoard beside the image); returns the PNG path."""
        if not self.enabled:
            return None
        png, width, height = encode_png(img)  # encoded once, for TensorBoard and for the file
        if self.writer is not None:
            if hasattr(self.writer, "_get_file_writer"):  # a SummaryWriter
                self.writer._get_file_writer().add_summary(described_image(tag, png, width, height, description), step)
            else:
                self.writer.add_image(tag, to_rgb(img).clamp(0, 1), global_step=step, dataformats="CHW")
        path = tag_to_path(self.png_dir, tag)
        self._mkdir(path.parent)
        path.write_bytes(png)
        self.written.append(path)
        return path

    def _mkdir(self, folder: Path) -> None:
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)

    def scalar(self, tag: str, value: float, step: int = 0) -> None:
        """One scalar to every logger (TensorBoard, CSV, ...)."""
        if not self.enabled:
            return
        if self.loggers:
            for logger in self.loggers:
                logger.log_metrics({tag: float(value)}, step=step)
        elif self.writer is not None:
            self.writer.add_scalar(tag, float(value), global_step=step)

    def histogram(self, tag: str, values: torch.Tensor, step: int = 0) -> None:
        """The distribution of ``values`` (one per unit, say) as a TensorBoard histogram."""
        finite = values.detach().float().cpu().flatten()
        finite = finite[torch.isfinite(finite)]
        if self.enabled and self.writer is not None and finite.numel():
            self.writer.add_histogram(tag, finite, global_step=step)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """Markdown for TensorBoard's TEXT tab (tables, notes)."""
        if self.enabled and self.writer is not None:
            self.writer.add_text(tag, markdown, global_step=step)

    def embedding(
        self, tag: str, features: torch.Tensor, metadata: Any = None, label_img: Any = None, step: int = 0
    ) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_embedding(features, metadata=metadata, label_img=label_img, global_step=step, tag=tag)

    def save(self, name: str, tensors: dict[str, Any]) -> Path | None:
        """Save a dict of tensors as ``<run>/interp/<name>`` (loadable with ``weights_only=True``)."""
        if not self.enabled:
            return None
        from interp.atlas.build import result_name

        path = self.png_dir / result_name(name)  # a layer name holding "/" stays one folder
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(tensors, path)
        return path

    def flush(self) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.flush()
        for logger in self.loggers:
            logger.save()


def signed_with_legend(values: torch.Tensor, size: int = 256, bar_width: int = 14) -> torch.Tensor:
    """A signed map ([H, W] or [1, H, W]) in a diverging colour scale (blue negative, white zero, red
    positive; symmetric) beside a colour bar labelled with its +-range: a [3, H', W'] image."""
    from interp.optvis.templates import colorbar, diverging_colormap

    m = values.detach().float().cpu().reshape(values.shape[-2], values.shape[-1])
    vmax = float(m.abs().max()) or 1.0
    img = upscale(diverging_colormap(m, vmax=vmax), size)
    h = int(img.shape[-2])
    bar = colorbar(vmax, height=h, width=bar_width)
    font = _font(12)
    label_w = 52
    canvas = Image.new("RGB", (int(img.shape[-1]) + 8 + bar_width + label_w, h), "white")
    canvas.paste(tensor_to_pil(img), (0, 0))
    x = int(img.shape[-1]) + 8
    canvas.paste(tensor_to_pil(bar), (x, 0))
    draw = ImageDraw.Draw(canvas)
    for text, y, anchor in ((f"+{vmax:.2g}", 0, "lt"), ("0", h // 2, "lm"), (f"-{vmax:.2g}", h, "lb")):
        draw.text((x + bar_width + 4, y), text, fill="black", font=font, anchor=anchor)
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
    font = _font(font_size)
    for i in range(n):
        r, c = divmod(i, nrow)
        left, top = pad + c * (w + pad), pad + r * (h + label_h + pad)
        canvas.paste(tensor_to_pil(x[i]), (left, top))
        draw.text((left + w // 2, top + h + 2), str(labels[i]), fill="black", font=font, anchor="mt")
    return pil_to_tensor(canvas)


def titled_column(
    images: Sequence[torch.Tensor], titles: Sequence[str], gap: int = 8, font_size: int = 14
) -> torch.Tensor:
    """Images one above the other ([3, H, W] each, left-aligned on white), each with its caption
    above it: a [3, H, W] tensor."""
    pictures = [to_rgb(img).clamp(0, 1) for img in images]
    font = _font(font_size)
    caption_h = font_size + 8
    width = max(int(p.shape[-1]) for p in pictures) + 2 * gap
    height = sum(int(p.shape[-2]) + caption_h + gap for p in pictures) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = gap
    for picture, caption in zip(pictures, titles):
        draw.text((gap, y), caption, fill="black", font=font)
        canvas.paste(tensor_to_pil(picture), (gap, y + caption_h))
        y += int(picture.shape[-2]) + caption_h + gap
    return pil_to_tensor(canvas)


def colour_legend(height: int, top: str = "+max", bottom: str = "-max", bar_width: int = 14) -> torch.Tensor:
    """A vertical diverging colour bar (red at the top, white zero in the middle, blue at the
    bottom) with its labels: a [3, height, W] image."""
    from interp.optvis.templates import colorbar

    bar = colorbar(1.0, height=height, width=bar_width)
    font = _font(12)
    canvas = Image.new("RGB", (bar_width + 48, height), "white")
    canvas.paste(tensor_to_pil(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for text, y, anchor in ((top, 0, "lt"), ("0", height // 2, "lm"), (bottom, height, "lb")):
        draw.text((bar_width + 4, y), text, fill="black", font=font, anchor=anchor)
    return pil_to_tensor(canvas)
