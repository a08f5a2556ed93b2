"""``Expressions``: each class of a face classifier rendered from noise and accentuated from a face."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.report import Reporter
from interp.steps.dream import Images
from interp.steps.expressions import ClassPictures, ExpressionSettings, expressions


class Expressions(InterpretationCallback):
    """Render every class of the classifier ``layer`` (face-api's seven expressions) by
    optimization and accentuate it from a face photo, each picture captioned with the probability
    the network gives it beside the face's own (:func:`interp.steps.expressions.expressions`);
    logs ``interp/expressions/<layer>``. ``result`` is a
    :class:`~interp.steps.expressions.ClassPictures`.

    Args:
        layer: the logits (``fc`` of :class:`~interp.models.FaceExpressionNet`).
        settings: an :class:`~interp.steps.expressions.ExpressionSettings` (``face_box``, ``steps``, ..., where their
            defaults and docs live), a mapping of them, or None (the defaults).
        image: the photo (None: the shipped portrait); only its first image is used.
        options: the run arguments of :class:`InterpretationCallback` (``every_n_epochs``, ``run_on_train_end``,
            ``on_error``, ``progress``) and settings by name, over ``settings`` (``steps=64``,
            ``face_box=[25, 75, 80, 80]``).

    Raises:
        SettingsError: a name that is not a setting, or a value that cannot work.
    """

    Settings = ExpressionSettings
    needs_data = False
    result: ClassPictures | None

    def __init__(
        self,
        layer: str = "fc",
        settings: ExpressionSettings | Mapping[str, Any] | None = None,
        *,
        image: Images = None,
        **options: Any,
    ):
        super().__init__(layer, settings, **options)
        self.image = image

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> ClassPictures:
        return expressions(model, reporter, self.layer, self.settings, image=self.image, step=step, progress=progress)
