"""``TopKExamples``: the data set's maximal-activation examples for units of a layer."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import UnitCallback
from interp.report import Reporter
from interp.steps.common import example_input, resolve_units
from interp.steps.topk import Examples, TopKSettings, examples_for, log_examples


class TopKExamples(UnitCallback):
    """Log, for each unit, the grid of the ``k`` examples of the data that activate it most
    (:func:`interp.steps.topk_examples`). ``result`` is an :class:`~interp.steps.Examples`.

    Args:
        layer: layer name.
        units: unit numbers (a list or range); None: every unit of the layer.
        settings: a :class:`~interp.steps.topk.TopKSettings` (``k``, ``spatial``, ``bottom``, ``batch_size``, where
            their defaults and docs live), a mapping of them, or None (the defaults).
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: see
            :class:`InterpretationCallback`.
        changes: settings by name, over ``settings`` (``k=8``, ``bottom=True``).

    Raises:
        SettingsError: a name that is not a setting, or a value that cannot work (``k=0``), at once.
    """

    Settings = TopKSettings
    result: Examples | None

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
        examples = examples_for(self.store, (model, step, self.layer), dataset, units, self.settings, progress)
        log_examples(model, examples, reporter, self.layer, units, step, self.settings.k)
        return examples
