"""Writing interpretation pictures to TensorBoard and PNG files.

Algorithms (``interp.optvis``) return tensors; :mod:`interp.images` assembles grids and panels and
encodes them; a :class:`Reporter` writes each image to the run's TensorBoard logger (when there is
one) and as ``<run>/interp/<tag>.png``. Only global rank zero writes.

The drawing functions (``grid``, ``titled_row``, ``unit_panel``, ...) live in :mod:`interp.images`;
they are re-exported here for the modules that import them from ``interp.report``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from interp.images import (
    PANEL_TITLES,
    PNG_LEVEL,
    colour_legend,
    draw_boxes,
    encode_png,
    font,
    grid,
    heatmap_overlay,
    labelled_grid,
    pil_to_tensor,
    signed_with_legend,
    tensor_to_pil,
    titled_column,
    titled_row,
    to_rgb,
    to_uint8,
    unit_panel,
    upscale,
)

__all__ = [
    "PANEL_TITLES",
    "PNG_LEVEL",
    "Reporter",
    "colour_legend",
    "described_image",
    "draw_boxes",
    "encode_png",
    "event_file_writer",
    "font",
    "grid",
    "heatmap_overlay",
    "inputs_at",
    "labelled_grid",
    "pil_to_tensor",
    "signed_with_legend",
    "tag_to_path",
    "tensor_to_pil",
    "titled_column",
    "titled_row",
    "to_rgb",
    "to_uint8",
    "topk_grid",
    "topk_images",
    "unit_panel",
    "upscale",
]

log = logging.getLogger(__name__)


# --- data set pictures ------------------------------------------------------------------------------


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


def event_file_writer(writer: Any) -> Any | None:
    """The event file writer behind a TensorBoard ``SummaryWriter`` (torch's or tensorboardX's), which
    takes a ready ``Summary`` (:func:`described_image`); ``None`` for other writers.

    The one private call of this package into TensorBoard's writer: ``SummaryWriter`` has no public
    method that writes a ready summary, and its ``add_image`` neither takes a description nor
    reuses an encoded PNG. ``tests/report/test_reporter.py`` fails when torch renames it.
    """
    get = getattr(writer, "_get_file_writer", None)
    return get() if callable(get) else None


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
        pixels = to_uint8(img)
        png = encode_png(pixels)  # encoded once, for TensorBoard and for the file
        if self.writer is not None:
            events = event_file_writer(self.writer)
            if events is not None:
                height, width = pixels.shape[:2]
                events.add_summary(described_image(tag, png, width, height, description), step)
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
        from interp.atlas.load import result_name

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
