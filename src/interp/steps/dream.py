"""DeepDream on photos at a layer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from interp.optvis import Dream, as_image_batch, dream
from interp.report import Reporter, titled_row
from interp.steps.common import check_layer, gather_shares, my_share

Images = torch.Tensor | str | Path | Sequence[torch.Tensor | str | Path] | None


def load_images(images: Images, size: int | None) -> list[torch.Tensor]:
    """Paths (shorter side resized to ``size``), tensors or None (the shipped face photo) as a list
    of [C, H, W] images in [0, 1]."""
    from interp.data.images import default_face_image_path, load_image

    if images is None:
        images = [default_face_image_path()]
    if isinstance(images, torch.Tensor):
        return list(as_image_batch(images, "images"))
    if isinstance(images, (str, Path)):
        images = [images]
    return [load_image(p, size=size) if isinstance(p, (str, Path)) else as_image_batch(p, "image")[0] for p in images]


def deep_dream(
    model: nn.Module,
    reporter: Reporter,
    *,
    layer: str,
    images: Images = None,
    size: int | None = 224,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps_per_octave: int = 10,
    step_size: float = 1.5,
    roll: int = 32,
    tile_size: int = 512,
    seed: int = 0,
    note: str | None = None,
    step: int = 0,
    progress: bool = False,
) -> list[Dream]:
    """Dream each image at ``layer``; log ``interp/dream/<layer>`` (originals beside dreams, the
    ``note`` in the title) and ``interp/dream/<layer>/image_N`` at full size."""
    check_layer(model, layer)
    loaded = load_images(images, size)
    mine = []  # under torch.distributed each rank dreams its share of the images
    for i in my_share(list(range(len(loaded)))):
        mine.append(
            dream(
                model,
                loaded[i],
                layer,
                octaves=octaves,
                octave_scale=octave_scale,
                steps_per_octave=steps_per_octave,
                step_size=step_size,
                roll=roll,
                tile_size=tile_size,
                seed=seed,
                progress=progress,
            )
        )
    results = [r for part in gather_shares(mine) for r in part]
    pairs = []
    for i, (img, result) in enumerate(zip(loaded, results)):
        reporter.image(f"dream/{layer}/image_{i}", result.image[0], step, description=f"Image {i} dreamed at {layer}.")
        pairs += [img, result.image[0]]
    captions = [c for i in range(len(pairs) // 2) for c in (f"original {i}", f"dream at {layer}")]
    title = f"DeepDream at {layer}" + (f" ({note})" if note else "")
    reporter.image(
        f"dream/{layer}",
        titled_row(pairs, captions, title=title),
        step,
        description=f"DeepDream at {layer}: each image beside its dream" + (f" ({note})" if note else "") + ".",
    )
    return results
