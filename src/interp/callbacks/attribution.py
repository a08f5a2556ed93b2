"""``AttributionCheck``: Captum cross-checks, attributions of the top-k examples, sanity check."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import UnitCallback
from interp.report import Reporter
from interp.steps.attribution import AttributionSettings, AttributionSummary, attribute_units
from interp.steps.common import example_input, resolve_units
from interp.steps.topk import TopKSettings, examples_for


class AttributionCheck(UnitCallback):
    """Cross-check our layer capture against Captum, and attribute the units' top examples
    (:func:`interp.steps.attribute_units`). ``result`` is an
    :class:`~interp.steps.AttributionSummary`.

    ``methods``: ``ig``, ``saliency``, ``deeplift``, ``occlusion``, ``gradcam`` (conv layers), each
    with its model-randomization check and drawn with a colour bar.

    Captum's activations are compared for every unit; input gradients for the first
    ``check_units`` units (None: all of them; each costs one backward pass per check input).
    A difference above ``tolerance`` follows ``on_mismatch``: ``"raise"``
    (:class:`~interp.steps.AttributionMismatchError`) or ``"warn"``.

    Per unit: ``interp/attribution/<layer>/unit_XXX`` (examples | integrated gradients | gradient,
    red positive, blue negative); per layer, histograms over units and means of
    ``ig_completeness_error`` and of ``randomization_spearman_ig``, ``randomization_spearman_grad``
    and ``same_model_spearman_ig`` (model randomization of all layers at once, Adebayo et al.
    2018: a faithful map changes when the weights do, so a low ``randomization`` value is good),
    these three on the first ``sanity_units`` units (None: every unit).

    ``scores`` (True: the defaults of :class:`~interp.steps.attribution.ScoreSettings`, a mapping: those
    settings, e.g. ``{noise_samples: 5}``; False: none) scores each method's maps of the first ``score_units``
    units (16 by default, like ``sanity_units``; None: every unit): deletion and insertion AUC, faithfulness
    correlation, max-sensitivity, Gini sparseness and cascading randomization (:mod:`interp.steps.attribution`).
    They go to TensorBoard as a TEXT table ``attribution_scores/<layer>/table`` (method by metric, median over
    units, each header saying whether lower or higher is better) and scalars
    ``attribution_scores/<layer>/<metric>/<method>``, into ``attribution.pt`` per unit, and onto the atlas.

    Args:
        layer: the layer name.
        units: one unit, several, or ``None`` for all.
        settings: an :class:`~interp.steps.attribution.AttributionSettings` (``k``, ``methods``, ``scores``, ...,
            where their defaults and docs live), a mapping of them, or None (the defaults).
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: as for
            :class:`~interp.callbacks.base.InterpretationCallback`.
        changes: settings by name, over ``settings`` (``k=4``, ``methods=["ig"]``, ``scores=False``).

    Raises:
        SettingsError: a name that is not a setting, an unknown method or ``on_mismatch``, score settings that do
            not work, or a negative ``score_units``.
    """

    Settings = AttributionSettings
    result: AttributionSummary | None

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> AttributionSummary:
        assert dataset is not None
        units = resolve_units(model, self.layer, self.units, example_input(dataset))
        topk = TopKSettings(k=self.settings.k, batch_size=self.settings.batch_size)
        examples = examples_for(self.store, (model, step, self.layer), dataset, units, topk)
        return attribute_units(
            model, dataset, reporter, self.layer, self.settings, units=self.units, examples=examples, step=step
        )
