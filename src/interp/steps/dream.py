"""DeepDream on photos at a layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from interp.optvis import Dream, as_image_batch, dream
from interp.report import Reporter, titled_row
from interp.settings import Settings
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


@dataclass(frozen=True)
class DreamSettings(Settings):
    """What decides DeepDream's pictures (:func:`deep_dream`).

    Attributes:
        size: the shorter side of images read from files (None: as stored).
        octaves: scales the image is dreamed at, smallest first (:func:`~interp.optvis.dream.dream`).
        octave_scale: the ratio of one octave's side to the next smaller one's.
        steps_per_octave: gradient-ascent steps at each octave.
        step_size: each step moves pixels by ``step_size / 255`` times the gradient over its mean magnitude.
        roll: the largest random shift of the image before each step, in pixels (hides the tiles' seams).
        tile_size: the gradient is computed on tiles of at most this side (bounds the memory).
        seed: seeds the shifts.
    """

    size: int | None = 224
    octaves: int = 4
    octave_scale: float = 1.4
    steps_per_octave: int = 10
    step_size: float = 1.5
    roll: int = 32
    tile_size: int = 512
    seed: int = 0

    def check(self) -> None:
        """Refuse values that cannot work (``octaves=0``, ``octave_scale=0.5``, ``roll=-1``).

        Raises:
            SettingsError: a value that cannot work.
        """
        self.at_least("size", 1, optional=True)
        self.at_least("octaves", 1)
        self.finite("octave_scale", 1.0)
        self.at_least("steps_per_octave", 0)
        self.finite("step_size", 0.0)
        self.at_least("roll", 0)
        self.at_least("tile_size", 1)


def deep_dream(
    model: nn.Module,
    reporter: Reporter,
    layer: str,
    settings: DreamSettings | None = None,
    *,
    images: Images = None,
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
        settings: the :class:`DreamSettings` (None: the defaults).
        images: as for :func:`load_images` (read at ``settings.size``).
        note: added to the title.
        step: the global step the pictures are logged at.
        progress: show a tqdm bar.

    Returns:
        One :class:`~interp.optvis.dream.Dream` per image.

    Raises:
        InterpError: an unknown layer.
    """
    s = settings or DreamSettings()
    check_layer(model, layer)
    loaded = load_images(images, s.size)
    mine = []  # under torch.distributed each rank dreams its share of the images
    for i in my_share(list(range(len(loaded)))):
        mine.append(
            dream(
                model,
                loaded[i],
                layer,
                octaves=s.octaves,
                octave_scale=s.octave_scale,
                steps_per_octave=s.steps_per_octave,
                step_size=s.step_size,
                roll=s.roll,
                tile_size=s.tile_size,
                seed=s.seed,
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
