"""``DeepDream``: dream given images at a layer."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.optvis import Dream
from interp.report import Reporter
from interp.steps.dream import Images, deep_dream


class DeepDream(InterpretationCallback):
    """Dream each image at ``layer`` (:func:`interp.steps.deep_dream`) and log
    ``interp/dream/<layer>`` (original | dream) and ``interp/dream/<layer>/image_N``. ``result``
    is the list of :class:`~interp.optvis.Dream` results.

    Args:
        images: image paths, a tensor [N, C, H, W] / [C, H, W] in [0, 1], or None for the
            shipped face photo.
        size: resize the shorter side of loaded images to this (None: as is).
        octaves, octave_scale, steps_per_octave, step_size, roll, tile_size, seed: see
            :func:`interp.optvis.dream`.
        note: added to the picture's title (``visualize`` writes RANDOM WEIGHTS there).
    """

    needs_data = False
    result: list[Dream] | None

    def __init__(
        self,
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
        *,
        every_n_epochs: int = 0,
        run_on_train_end: bool = True,
        on_error: str = "warn",
        progress: bool = True,
    ):
        super().__init__(
            layer,
            every_n_epochs=every_n_epochs,
            run_on_train_end=run_on_train_end,
            on_error=on_error,
            progress=progress,
        )
        self.images, self.size, self.note = images, size, note
        self.octaves, self.octave_scale, self.steps_per_octave = octaves, octave_scale, steps_per_octave
        self.step_size, self.roll, self.tile_size, self.seed = step_size, roll, tile_size, seed

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> list[Dream]:
        return deep_dream(
            model,
            reporter,
            layer=self.layer,
            images=self.images,
            size=self.size,
            octaves=self.octaves,
            octave_scale=self.octave_scale,
            steps_per_octave=self.steps_per_octave,
            step_size=self.step_size,
            roll=self.roll,
            tile_size=self.tile_size,
            seed=self.seed,
            note=self.note,
            step=step,
            progress=progress,
        )
