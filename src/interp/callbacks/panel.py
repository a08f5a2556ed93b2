"""``UnitPanel``: the seed's figure, maximal-activation examples beside the optimized input."""

from __future__ import annotations

from interp.callbacks.base import InterpretationCallback, image_regularizer, shared_results, unit_tag
from interp.callbacks.topk import mine_for_trainer
from interp.optvis import render_units
from interp.report import topk_grid, unit_panel


class UnitPanel(InterpretationCallback):
    """For each unit one image: the grid of its maximal-activation training examples on the
    left, the input optimized for it on the right, titled ``Maximal activation examples |
    Visualization by optimization``. Tag ``interp/panel/<layer>/unit_XXX``.

    Reuses the results of ``TopKExamples`` and ``FeatureVisualization`` on the same layer when
    they ran before it in the same run; computes what is missing itself.
    """

    kind = "panel"

    def __init__(self, layer: str, units="0-63", k: int = 16, split: str = "train", batch_size: int = 1024,
                 steps: int = 256, lr: float = 0.05, seed: int = 0, transforms="default", tv_weight: float = 0.0,
                 l1_weight: float = 0.0, **kwargs):
        super().__init__(layer, units, **kwargs)
        self.k, self.split, self.batch_size = k, split, batch_size
        self.steps, self.lr, self.seed, self.transforms = steps, lr, seed, transforms
        self.tv_weight, self.l1_weight = tv_weight, l1_weight
        self.paths = {}

    def interpret(self, trainer, pl_module, reporter, step):
        store = shared_results(trainer)
        units = self.resolve_units(pl_module)
        cached_topk = store.get(("topk", self.layer))
        if cached_topk is not None and set(units) <= set(cached_topk[0].units.tolist()):
            topk, dataset = cached_topk
        else:
            dataset = self.data(trainer, self.split)
            topk = mine_for_trainer(trainer, pl_module, self.layer, units, self.k, dataset, self.batch_size)
        rendering = store.get(("featvis", self.layer))
        if rendering is None or not set(units) <= set(rendering.units or []):
            rendering = render_units(pl_module, self.layer, units, steps=self.steps, lr=self.lr, seed=self.seed,
                                     transforms=self.transforms,
                                     regularizer=image_regularizer(self.tv_weight, self.l1_weight))
        topk_row = {u: i for i, u in enumerate(topk.units.tolist())}
        render_row = {u: i for i, u in enumerate(rendering.units)}
        for unit in units:
            examples = topk_grid(topk, dataset, topk_row[unit], nrow=4)
            img = unit_panel(examples, rendering.image[render_row[unit]], title=f"{self.layer} unit {unit}")
            self.paths[unit] = reporter.image(unit_tag("panel", self.layer, unit), img, step)
