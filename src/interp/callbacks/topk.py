"""``TopKExamples``: the data set's maximal-activation examples for units of a layer."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import CallbackArgumentError, InterpretationCallback
from interp.optvis.topk import SPATIAL_REDUCTIONS
from interp.report import Reporter
from interp.steps.common import Units, example_input, resolve_units
from interp.steps.topk import Examples, TopKSettings, examples_for, log_examples


class TopKExamples(InterpretationCallback):
    """Log, for each unit, the grid of the ``k`` examples of the data that activate it most
    (:func:`interp.steps.topk_examples`). ``result`` is an :class:`~interp.steps.Examples`.

    Args:
        layer: layer name.
        units: unit numbers (a list or range); None: every unit of the layer.
        k: examples per unit, a whole number >= 1 (else :class:`CallbackArgumentError` at once).
            A ``k`` larger than the data set keeps every example, with one warning when the
            examples are mined (the data set is known then; a folder of 3 photos with the default
            ``k`` is fine). Each unit's picture shows the best 64 examples at most
            (:data:`interp.steps.topk.PICTURE_LIMIT`); ``result``, ``topk.pt`` and the atlas keep all ``k``.
        batch_size: inference batch size.
        spatial: ``max`` or ``mean`` over positions for conv layers.
        bottom: also log the bottom-k (``topk/<layer>/bottom/unit_XXX``; the atlas shows them).
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: see
            :class:`InterpretationCallback`.
    """

    result: Examples | None

    def __init__(
        self,
        layer: str,
        units: Units = None,
        k: int = 16,
        batch_size: int = 1024,
        spatial: str = "max",
        bottom: bool = False,
        *,
        split: str = "train",
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
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise CallbackArgumentError(f"TopKExamples: k must be a whole number >= 1, got k={k!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise CallbackArgumentError(f"TopKExamples: batch_size must be a whole number >= 1, got {batch_size!r}")
        if spatial not in SPATIAL_REDUCTIONS:
            raise CallbackArgumentError(
                f"TopKExamples: spatial must be one of {', '.join(SPATIAL_REDUCTIONS)}, got {spatial!r}"
            )
        self.units, self.k, self.batch_size, self.spatial, self.bottom = units, k, batch_size, spatial, bottom

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Examples:
        assert dataset is not None
        units = resolve_units(model, self.layer, self.units, example_input(dataset))
        settings = TopKSettings(self.k, self.spatial, self.bottom, self.batch_size)
        examples = examples_for(self.store, (model, step, self.layer), dataset, units, settings, progress)
        log_examples(model, examples, reporter, self.layer, units, step, self.k)
        return examples
