"""``Inversion``: reconstruct test examples from a layer's representation (Mahendran & Vedaldi)."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.optvis import Reconstruction
from interp.report import Reporter
from interp.steps.inversion import inversion


class Inversion(InterpretationCallback):
    """Invert ``n_examples`` examples of the ``split`` set (:func:`interp.steps.inversion`):
    ``interp/inversion/<layer>`` (originals above, reconstructions below) and the mean relative
    representation error ``interp/inversion/<layer>/relative_error``. ``result`` is a
    :class:`~interp.optvis.Reconstruction`.

    Args:
        layer: the layer whose representation is inverted.
        n_examples: number of examples (the first of the data set).
        steps: optimization steps.
        lr: Adam's learning rate.
        lambda_tv: weight of the total variation.
        lambda_alpha: weight of the alpha-norm.
        seed: seeds the starts.
    split, dataset, every_n_epochs, run_on_train_end, on_error, progress: as for
        :class:`~interp.callbacks.base.InterpretationCallback`.
    """

    result: Reconstruction | None

    def __init__(
        self,
        layer: str,
        n_examples: int = 8,
        steps: int = 400,
        lr: float = 0.05,
        lambda_tv: float = 1e-4,
        lambda_alpha: float = 1e-5,
        seed: int = 0,
        *,
        split: str = "test",
        dataset: Dataset | None = None,
        every_n_epochs: int = 0,
        run_on_train_end: bool = True,
        on_error: str = "warn",
        progress: bool = True,
    ):
        super().__init__(
            layer,
            split=split,
            dataset=dataset,
            every_n_epochs=every_n_epochs,
            run_on_train_end=run_on_train_end,
            on_error=on_error,
            progress=progress,
        )
        self.n_examples, self.steps, self.lr = n_examples, steps, lr
        self.lambda_tv, self.lambda_alpha, self.seed = lambda_tv, lambda_alpha, seed

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Reconstruction:
        assert dataset is not None
        return inversion(
            model,
            dataset,
            reporter,
            layer=self.layer,
            n_examples=self.n_examples,
            steps=self.steps,
            lr=self.lr,
            lambda_tv=self.lambda_tv,
            lambda_alpha=self.lambda_alpha,
            seed=self.seed,
            step=step,
            progress=progress,
        )
