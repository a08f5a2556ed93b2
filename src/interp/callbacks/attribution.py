"""``AttributionCheck``: Captum cross-checks, attributions of the top-k examples, sanity check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.errors import InterpError
from interp.optvis.attribution import METHODS
from interp.report import Reporter
from interp.steps.attribution import AttributionSummary, ScoreSettings, attribute_units
from interp.steps.common import Units, example_input, resolve_units
from interp.steps.topk import TopKSettings, examples_for


class AttributionCheck(InterpretationCallback):
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
        k: top examples attributed per unit.
        n_check: inputs of the Captum cross-check.
        check_units: units whose gradients are cross-checked (the first ones; ``None``: all).
        ig_steps: integration steps of integrated gradients.
        internal_batch_size: inputs per forward pass of integrated gradients.
        tolerance: the largest accepted difference from Captum.
        on_mismatch: ``"raise"`` or ``"warn"``.
        sanity_check: run the model-randomization check.
        sanity_units: units of the randomization check (the first ones; ``None``: all).
        batch_size: batch size of the top-k mining.
        methods: the attribution methods.
        scores: the score settings, as above.
        score_units: units scored (the first ones; ``None``: all).
    split, dataset, every_n_epochs, run_on_train_end, on_error, progress: as for
        :class:`~interp.callbacks.base.InterpretationCallback`.

    Raises:
        ValueError: an unknown ``on_mismatch``.
        InterpError: an unknown method, score settings that do not work, or a negative ``score_units``.
    """

    result: AttributionSummary | None

    def __init__(
        self,
        layer: str,
        units: Units = None,
        k: int = 8,
        n_check: int = 64,
        check_units: int | None = 8,
        ig_steps: int = 32,
        internal_batch_size: int = 256,
        tolerance: float = 1e-5,
        on_mismatch: str = "warn",
        sanity_check: bool = True,
        sanity_units: int | None = 16,
        batch_size: int = 1024,
        methods: Sequence[str] = ("ig", "saliency"),
        scores: bool | ScoreSettings | Mapping = True,
        score_units: int | None = 16,
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
        if on_mismatch not in ("raise", "warn"):
            raise ValueError(f"on_mismatch must be 'raise' or 'warn', got {on_mismatch!r}")
        self.units, self.k, self.n_check, self.check_units = units, k, n_check, check_units
        self.ig_steps, self.internal_batch_size, self.tolerance = ig_steps, internal_batch_size, tolerance
        self.on_mismatch, self.sanity_check, self.batch_size = on_mismatch, sanity_check, batch_size
        self.sanity_units = sanity_units
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise InterpError(
                f"unknown attribution method {unknown[0] if unknown else None!r}: use {', '.join(METHODS)}"
            )
        self.methods = tuple(methods)
        try:
            self.scores = ScoreSettings.of(scores)
        except (TypeError, ValueError) as exc:
            raise InterpError(f"AttributionCheck: {exc}") from None
        if score_units is not None and int(score_units) < 0:
            raise InterpError(f"AttributionCheck: score_units must be >= 0 or null (every unit), got {score_units}")
        self.score_units = None if score_units is None else int(score_units)

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
        settings = TopKSettings(k=self.k, spatial="max", batch_size=self.batch_size)
        examples = examples_for(self.store, (model, step, self.layer), dataset, units, settings)
        return attribute_units(
            model,
            dataset,
            reporter,
            layer=self.layer,
            units=self.units,
            k=self.k,
            n_check=self.n_check,
            check_units=self.check_units,
            ig_steps=self.ig_steps,
            internal_batch_size=self.internal_batch_size,
            tolerance=self.tolerance,
            on_mismatch=self.on_mismatch,
            sanity_check=self.sanity_check,
            sanity_units=self.sanity_units,
            batch_size=self.batch_size,
            examples=examples,
            methods=self.methods,
            step=step,
            scores=self.scores or False,
            score_units=self.score_units,
        )
