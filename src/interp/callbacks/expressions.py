"""``Expressions``: each class of a face classifier rendered from noise and accentuated from a face."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.report import Reporter
from interp.steps.dream import Images
from interp.steps.expressions import ClassPictures, expressions


class Expressions(InterpretationCallback):
    """Render every class of the classifier ``layer`` (face-api's seven expressions) by
    optimization and accentuate it from a face photo, each picture captioned with the probability
    the network gives it beside the face's own (:func:`interp.steps.expressions.expressions`);
    logs ``interp/expressions/<layer>``. ``result`` is a
    :class:`~interp.steps.expressions.ClassPictures`.

    Args:
        layer: the logits (``fc`` of :class:`~interp.models.FaceExpressionNet`).
        image: a photo path or tensor; None: the shipped portrait.
        face_box: (top, left, height, width) of the face in the photo; None: the shipped
            portrait's face for it, else the whole photo.
        steps, lr, decay_power, accentuate_steps, accentuate_lr, reg_weight, seed: see
            :func:`~interp.steps.expressions.expressions`.
        every_n_epochs, run_on_train_end, on_error, progress: see :class:`InterpretationCallback`.
    """

    needs_data = False
    result: ClassPictures | None

    def __init__(
        self,
        layer: str = "fc",
        image: Images = None,
        face_box: Sequence[int] | None = None,
        steps: int = 256,
        lr: float = 0.01,
        decay_power: float = 1.5,
        accentuate_steps: int = 96,
        accentuate_lr: float = 0.003,
        reg_weight: float = 100.0,
        seed: int = 0,
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
        self.image, self.face_box = image, None if face_box is None else tuple(face_box)
        self.steps, self.lr, self.decay_power = steps, lr, decay_power
        self.accentuate_steps, self.accentuate_lr, self.reg_weight = accentuate_steps, accentuate_lr, reg_weight
        self.seed = seed

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> ClassPictures:
        return expressions(
            model,
            reporter,
            layer=self.layer,
            image=self.image,
            face_box=self.face_box,
            steps=self.steps,
            lr=self.lr,
            decay_power=self.decay_power,
            accentuate_steps=self.accentuate_steps,
            accentuate_lr=self.accentuate_lr,
            reg_weight=self.reg_weight,
            seed=self.seed,
            step=step,
            progress=progress,
        )
