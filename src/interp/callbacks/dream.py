"""``DeepDream``: dream given images at a layer when training ends."""

from __future__ import annotations

from pathlib import Path

import torch

from interp.callbacks.base import InterpretationCallback
from interp.optvis import dream
from interp.report import titled_row


def _load(images, size) -> list[torch.Tensor]:
    from interp.data.images import load_image

    if images is None:
        from interp.data.images import default_face_image_path

        images = [default_face_image_path()]
    if isinstance(images, torch.Tensor):
        return list(images) if images.dim() == 4 else [images]
    if isinstance(images, (str, Path)):
        images = [images]
    return [load_image(p, size=size) if isinstance(p, (str, Path)) else p for p in images]


class DeepDream(InterpretationCallback):
    """Dream each image at ``layer`` and log ``interp/dream/<layer>`` (original | dream), plus
    ``interp/dream/<layer>/image_N`` for each dreamed image at full size.

    Args:
        images: image paths, a tensor [N, C, H, W] / [C, H, W] in [0, 1], or None for the
            shipped face photo.
        size: resize the shorter side of loaded images to this (None: as is).
        octaves, octave_scale, steps_per_octave, step_size, jitter, tile_size: see
            :func:`interp.optvis.dream`.
    """

    kind = "dream"

    def __init__(self, layer: str, images=None, size: int | None = 224, octaves: int = 4, octave_scale: float = 1.4,
                 steps_per_octave: int = 10, step_size: float = 1.5, jitter: int = 32, tile_size: int = 512,
                 seed: int = 0, progress: bool = True, note: str | None = None, **kwargs):
        super().__init__(layer, None, **kwargs)
        self.images, self.size = images, size
        self.options = dict(octaves=octaves, octave_scale=octave_scale, steps_per_octave=steps_per_octave,
                            step_size=step_size, jitter=jitter, tile_size=tile_size, seed=seed)
        self.progress, self.note = progress, note
        self.results: list = []

    def interpret(self, trainer, pl_module, reporter, step):
        self.results = []
        pairs = []
        for i, img in enumerate(_load(self.images, self.size)):
            result = dream(pl_module, img, self.layer, progress=self.progress and trainer.is_global_zero, **self.options)
            self.results.append(result)
            reporter.image(f"interp/dream/{self.layer}/image_{i}", result.image[0], step)
            pairs += [img, result.image[0]]
        captions = [c for i in range(len(pairs) // 2) for c in (f"original {i}", f"dream at {self.layer}")]
        title = f"DeepDream at {self.layer}" + (f" ({self.note})" if self.note else "")
        reporter.image(f"interp/dream/{self.layer}", titled_row(pairs, captions, title=title), step)
