"""``Expressions``: each class of a face classifier rendered from noise and accentuated from a face."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.errors import InterpError
from interp.report import Reporter
from interp.steps.expressions import ClassPictures, ExpressionSettings, expressions


class Expressions(InterpretationCallback):
    """Render every class of the classifier ``layer`` (face-api's seven expressions) by
    optimization and accentuate it from a face photo, each picture captioned with the probability
    the network gives it beside the face's own (:func:`interp.steps.expressions.expressions`);
    logs ``interp/expressions/<layer>``. ``result`` is a
    :class:`~interp.steps.expressions.ClassPictures`.

    Args:
        layer: the logits (``fc`` of :class:`~interp.models.FaceExpressionNet`).
        settings: an :class:`~interp.steps.expressions.ExpressionSettings` (None: the defaults).
        every_n_epochs, run_on_train_end, on_error, progress: see :class:`InterpretationCallback`.
        options: settings by name, over ``settings`` (``image``, ``face_box``, ``steps``, ...: the fields of
            :class:`~interp.steps.expressions.ExpressionSettings`, where their defaults and docs live).

    Raises:
        InterpError: a name that is not a setting, or a setting out of range.
    """

    needs_data = False
    result: ClassPictures | None

    def __init__(
        self,
        layer: str = "fc",
        *,
        settings: ExpressionSettings | None = None,
        every_n_epochs: int = 0,
        run_on_train_end: bool = True,
        on_error: str = "warn",
        progress: bool = True,
        **options: Any,
    ):
        super().__init__(
            layer,
            every_n_epochs=every_n_epochs,
            run_on_train_end=run_on_train_end,
            on_error=on_error,
            progress=progress,
        )
        try:
            self.settings = replace(settings or ExpressionSettings(), layer=layer, **options)
        except TypeError as e:
            raise InterpError(f"Expressions: {e}") from None

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> ClassPictures:
        return expressions(model, reporter, self.settings, step=step, progress=progress)
