"""``DeepDream``: dream given images at a layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.optvis import Dream
from interp.report import Reporter
from interp.steps.dream import DreamSettings, Images, deep_dream


class DeepDream(InterpretationCallback):
    """Dream each image at ``layer`` (:func:`interp.steps.deep_dream`) and log
    ``interp/dream/<layer>`` (original | dream) and ``interp/dream/<layer>/image_N``. ``result``
    is the list of :class:`~interp.optvis.Dream` results.

    Args:
        layer: the layer whose activations are amplified.
        settings: a :class:`~interp.steps.dream.DreamSettings` (``size``, ``octaves``, ``steps_per_octave``, ...,
            where their defaults and docs live), a mapping of them, or None (the defaults).
        images: image paths, a tensor [N, C, H, W] / [C, H, W] in [0, 1], or None for the
            shipped face photo.
        note: added to the picture's title (``visualize`` writes RANDOM WEIGHTS there).
        options: the run arguments of :class:`InterpretationCallback` (``every_n_epochs``, ``run_on_train_end``,
            ``on_error``, ``progress``) and settings by name, over ``settings`` (``octaves=2``, ``size=None``).

    Raises:
        SettingsError: a name that is not a setting, or a value that cannot work.
    """

    Settings = DreamSettings
    needs_data = False
    result: list[Dream] | None

    def __init__(
        self,
        layer: str,
        settings: DreamSettings | Mapping[str, Any] | None = None,
        *,
        images: Images = None,
        note: str | None = None,
        **options: Any,
    ):
        super().__init__(layer, settings, **options)
        self.images, self.note = images, note

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
            model, reporter, self.layer, self.settings, images=self.images, note=self.note, step=step, progress=progress
        )
