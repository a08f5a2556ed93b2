"""``Atlas``: the unit atlas of the run, written after the other interpretations."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.report import Reporter
from interp.steps.atlas import AtlasSettings, unit_atlas


class Atlas(InterpretationCallback):
    """Build ``<run>/atlas/index.html`` from the results the callbacks before it saved
    (:func:`interp.steps.atlas.unit_atlas`): a page per layer (every unit, sortable, filterable)
    and per unit (examples, feature visualizations, weights, attributions, activation histogram,
    nearest units). Put it last. ``result`` is the path of the index page (None off rank zero).

    Args:
        settings: an :class:`~interp.steps.atlas.AtlasSettings` (it has none), an empty mapping or None.
        options: the run arguments of :class:`InterpretationCallback` (``split``: the data set the top-k
            indices refer to, ``train`` as ``TopKExamples`` mines; ``dataset``, ``every_n_epochs``, ...); a
            setting by name is refused (there are none).

    Raises:
        SettingsError: a name given as a setting.
    """

    Settings = AtlasSettings
    result: Path | None

    def __init__(self, settings: AtlasSettings | Mapping[str, Any] | None = None, **options: Any):
        super().__init__("", settings, **options)

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Path | None:
        if not reporter.enabled:
            return None
        return unit_atlas(model, dataset, reporter.run_dir, progress=progress)

    def validate(self, model: nn.Module, example: Any) -> None:
        """The atlas reads saved results; there is no layer to check."""
