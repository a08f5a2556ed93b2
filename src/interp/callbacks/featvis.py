"""``FeatureVisualization``: the input optimized for each unit (activation maximization)."""

from __future__ import annotations

from interp.callbacks.base import InterpretationCallback, image_regularizer, shared_results, unit_tag
from interp.optvis import render_units
from interp.report import grid, upscale


class FeatureVisualization(InterpretationCallback):
    """Optimize one input per unit (all units in one batched run) and log each.

    Tags: ``interp/featvis/<layer>/unit_XXX`` (image), ``.../activation`` (the achieved
    activation) and, when ``TopKExamples`` ran before on the same layer,
    ``.../ratio_to_dataset_max`` (achieved / the unit's best data set activation); and
    ``interp/featvis/<layer>/all`` (one grid of every unit).

    Args:
        steps, lr, seed, transforms: passed to :func:`interp.optvis.render_units`.
        objective: ``channel`` or ``unit`` (conv layers: centre position).
        shape: (C, H, W) of the input; default the model's ``example_input_array``.
        tv_weight, l1_weight: image regularizers (total variation, L1 towards black) subtracted
            from each unit's objective; 0 gives the plain activation maximum.
    """

    kind = "featvis"

    def __init__(self, layer: str, units="0-63", steps: int = 256, lr: float = 0.05, seed: int = 0,
                 transforms="default", objective: str = "channel", shape=None, tv_weight: float = 0.0,
                 l1_weight: float = 0.0, progress: bool = True, **kwargs):
        super().__init__(layer, units, **kwargs)
        self.steps, self.lr, self.seed, self.transforms = steps, lr, seed, transforms
        self.objective, self.shape, self.progress = objective, shape, progress
        self.tv_weight, self.l1_weight = tv_weight, l1_weight
        self.result = None

    def interpret(self, trainer, pl_module, reporter, step):
        units = self.resolve_units(pl_module)
        result = render_units(pl_module, self.layer, units, objective=self.objective, steps=self.steps, lr=self.lr,
                              seed=self.seed, transforms=self.transforms, shape=self.shape,
                              regularizer=image_regularizer(self.tv_weight, self.l1_weight),
                              progress=self.progress and trainer.is_global_zero)
        self.result = result
        shared_results(trainer)[("featvis", self.layer)] = result
        topk = shared_results(trainer).get(("topk", self.layer))
        best = {}
        if topk is not None:
            tk = topk[0]
            best = {u: float(v) for u, v in zip(tk.units.tolist(), tk.values[:, 0].tolist())}
        for row, unit in enumerate(units):
            tag = unit_tag("featvis", self.layer, unit)
            reporter.image(tag, upscale(result.image[row], 112), step)
            reporter.scalar(tag + "/activation", result.activations[row], step)
            if unit in best and best[unit] != 0:
                reporter.scalar(tag + "/ratio_to_dataset_max", float(result.activations[row]) / best[unit], step)
        reporter.image(f"interp/featvis/{self.layer}/all", grid(result.image, padding=2), step)
