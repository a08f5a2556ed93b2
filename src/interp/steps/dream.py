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
    """Paths, tensors or ``None`` (the shipped face photo) as a list of [C, H, W] images in [0, 1].

    Args:
        images: a path, a tensor ([C, H, W] or [B, C, H, W]), a sequence of them, or ``None``.
        size: the shorter side of images read from files (``None``: as stored).

    Returns:
        The images.
    """
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
    """Dream each image at ``layer``; log the originals beside the dreams and each dream at full size.

    The tags are ``dream/<layer>`` (with the ``note`` in the title) and ``dream/<layer>/image_N``. Under
    torch.distributed each rank dreams its share of the images.

    Args:
        model: the network.
        reporter: where the pictures go.
        layer: the layer whose activations are amplified (DeepDream's ``layer_l2``).
        images: as for :func:`load_images`.
        size: as for :func:`load_images`.
        octaves: as for :func:`~interp.optvis.dream.dream`.
        octave_scale: as for ``dream``.
        steps_per_octave: as for ``dream``.
        step_size: as for ``dream``.
        roll: as for ``dream``.
        tile_size: as for ``dream``.
        seed: as for ``dream``.
        note: added to the title.
        step: the global step the pictures are logged at.
        progress: show a tqdm bar.

    Returns:
        One :class:`~interp.optvis.dream.Dream` per image.

    Raises:
        InterpError: an unknown layer.
    """
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
