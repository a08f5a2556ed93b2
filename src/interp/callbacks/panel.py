"""``UnitPanel``: the headline picture, maximal-activation examples beside the optimized input."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import UnitCallback
from interp.callbacks.featvis import FeatureVisualization, view_inputs
from interp.callbacks.topk import TopKExamples
from interp.report import Reporter
from interp.steps.common import Units, example_input, model_example, resolve_units
from interp.steps.panel import PanelInputs, PanelSettings, unit_panels
from interp.steps.topk import TopKSettings, examples_for


class UnitPanel(UnitCallback):
    """For each unit one image: the grid of its maximal-activation examples on the left, the
    input optimized for it on the right (:func:`interp.steps.unit_panels`), tag
    ``interp/panel/<layer>/unit_XXX``. ``result`` maps each unit to its PNG path; ``settings`` is a
    :class:`~interp.steps.panel.PanelSettings`: the settings of
    :class:`FeatureVisualization` (the ``prototype`` view shows the unit's top examples aligned at
    their peak, averaged and accentuated; ``k`` the examples shown per unit) and ``batch_size``.

    Reuses results instead of computing them again: the ``topk`` and ``featvis`` callbacks when
    given, else a :class:`TopKExamples` of the run on the same layer and split with at least
    ``k`` examples, and a :class:`FeatureVisualization` filed under the same image settings
    (:meth:`~interp.steps.featvis_settings.FeatVisSettings.image_key`: steps, lr, seed, transforms,
    regularizers, ...). Whatever is missing is computed here.

    Args:
        layer: layer name.
        units: unit numbers (a list or range); None: every unit.
        settings: a :class:`~interp.steps.panel.PanelSettings`, a mapping of its settings, or None
            (the defaults).
        topk, featvis: callbacks whose results to use.
        options: the run arguments of :class:`InterpretationCallback` (``split``, ``dataset``,
            ``every_n_epochs``, ``run_on_train_end``, ``on_error``, ``progress``) and settings by name
            (``k=9``, ``steps=64``) replacing those of ``settings``.

    Raises:
        SettingsError: an unknown setting or one that cannot work.
    """

    result: dict[int, Path | None] | None
    Settings = PanelSettings
    settings: PanelSettings

    def __init__(
        self,
        layer: str,
        units: Units = None,
        settings: PanelSettings | Mapping[str, Any] | None = None,
        *,
        topk: TopKExamples | None = None,
        featvis: FeatureVisualization | None = None,
        **options: Any,
    ):
        super().__init__(layer, units, settings, **options)
        self.topk, self.featvis = topk, featvis

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> dict[int, Path | None]:
        assert dataset is not None
        settings = self.settings
        # given callbacks first, else the run's store (a feature visualization of the same settings, the
        # layer's top-k on this data set: the indices of a top-k point into the data set it mined)
        rendering = self.featvis.result if self.featvis is not None else None
        if rendering is None:
            rendering = self.store.get(model, step, self.layer, "featvis", settings.image_key())
        if self.topk is not None and self.topk.result is not None and self.topk.result.dataset is dataset:
            examples = self.topk.result
        else:
            example = model_example(model)
            units = resolve_units(
                model, self.layer, self.units, example if example is not None else example_input(dataset)
            )
            wanted = TopKSettings(k=settings.k, batch_size=settings.batch_size)
            examples = examples_for(self.store, (model, step, self.layer), dataset, units, wanted)
        prior, magnitude = None, None
        wanted_units = [self.units] if isinstance(self.units, int) else self.units
        if rendering is None or wanted_units is None or not rendering.covers(wanted_units, settings.views):
            prior, magnitude = view_inputs(settings.views, dataset, settings.seed)
        inputs = PanelInputs(prior, magnitude, examples, rendering)
        return unit_panels(model, dataset, reporter, self.layer, self.units, settings, inputs, step=step)
