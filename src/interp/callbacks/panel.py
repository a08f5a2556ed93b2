"""``UnitPanel``: the headline picture, maximal-activation examples beside the optimized input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.callbacks.featvis import FeatureVisualization, view_inputs
from interp.callbacks.topk import TopKExamples
from interp.report import Reporter
from interp.steps.common import Units, example_input, model_example, resolve_units
from interp.steps.panel import unit_panels
from interp.steps.topk import TopKSettings, examples_for


class UnitPanel(InterpretationCallback):
    """For each unit one image: the grid of its maximal-activation examples on the left, the
    input optimized for it on the right (:func:`interp.steps.unit_panels`), tag
    ``interp/panel/<layer>/unit_XXX``. ``result`` maps each unit to its PNG path.

    Reuses results instead of computing them again: the ``topk`` and ``featvis`` callbacks when
    given, else a :class:`TopKExamples` of the run on the same layer and split with at least
    ``k`` examples, and a :class:`FeatureVisualization` whose settings equal this panel's
    (steps, lr, seed, transforms, regularizers). Whatever is missing is computed here.

    Args:
        layer: layer name.
        units: unit numbers (a list or range); None: every unit.
        k: examples per unit.
        batch_size: inference batch size for mining.
        views, steps, lr, seed, transforms, tv_weight, l1_weight, prior_max_norm, kind,
            plain_param, l1_relative: as in :class:`FeatureVisualization` (the ``prototype`` view
            shows the unit's top examples aligned at their peak, averaged and accentuated).
        topk, featvis: callbacks whose results to use.
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: see
            :class:`InterpretationCallback`.
    """

    result: dict[int, Path | None] | None

    def __init__(
        self,
        layer: str,
        units: Units = None,
        k: int = 16,
        batch_size: int = 1024,
        steps: int = 256,
        lr: float = 0.05,
        seed: int = 0,
        transforms: Callable | str | None = "default",
        tv_weight: float = 0.0,
        l1_weight: float = 0.0,
        views: Sequence[str] = ("plain",),
        prior_max_norm: float | None = None,
        topk: TopKExamples | None = None,
        featvis: FeatureVisualization | None = None,
        kind: str = "channel",
        plain_param: str = "default",
        l1_relative: bool = False,
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
        self.units, self.k, self.batch_size = units, k, batch_size
        self.steps, self.lr, self.seed, self.transforms = steps, lr, seed, transforms
        self.tv_weight, self.l1_weight = tv_weight, l1_weight
        self.views, self.prior_max_norm = tuple(views), prior_max_norm
        self.topk, self.featvis = topk, featvis
        self.kind, self.plain_param, self.l1_relative = kind, plain_param, bool(l1_relative)

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
        wanted = (
            self.layer,
            self.steps,
            self.lr,
            self.seed,
            self.transforms,
            self.kind,
            None,
            self.tv_weight,
            self.l1_weight,
            self.prior_max_norm,
            self.plain_param,
            self.l1_relative,
        )
        # given callbacks first, else the run's store (a feature visualization of the same settings, the
        # layer's top-k on this data set: the indices of a top-k point into the data set it mined)
        rendering = self.featvis.result if self.featvis is not None else None
        if rendering is None:
            rendering = self.store.get(model, step, self.layer, "featvis", wanted)
        if self.topk is not None and self.topk.result is not None and self.topk.result.dataset is dataset:
            examples = self.topk.result
        else:
            example = model_example(model)
            units = resolve_units(
                model, self.layer, self.units, example if example is not None else example_input(dataset)
            )
            examples = examples_for(self.store, (model, step, self.layer), dataset, units, TopKSettings(k=self.k))
        prior = None
        wanted_units = [self.units] if isinstance(self.units, int) else self.units
        if rendering is None or wanted_units is None or not rendering.covers(wanted_units, self.views):
            prior, _ = view_inputs([v for v in self.views if v == "prior"], dataset, self.seed)
        return unit_panels(
            model,
            dataset,
            reporter,
            layer=self.layer,
            units=self.units,
            k=self.k,
            batch_size=self.batch_size,
            views=self.views,
            steps=self.steps,
            lr=self.lr,
            seed=self.seed,
            transforms=self.transforms,
            tv_weight=self.tv_weight,
            l1_weight=self.l1_weight,
            kind=self.kind,
            plain_param=self.plain_param,
            l1_relative=self.l1_relative,
            prior=prior,
            prior_max_norm=self.prior_max_norm,
            examples=examples,
            rendering=rendering,
            step=step,
        )
