"""``AttributionCheck``: Captum cross-checks, attributions of the top-k examples, sanity check."""

from __future__ import annotations

import logging


from interp.callbacks.base import InterpretationCallback, example_input, shared_results, unit_tag
from interp.callbacks.topk import mine_for_trainer
from interp.optvis.attribution import agreement, neuron_attributions, randomization_check, randomized_copy
from interp.report import grid, heatmap_overlay, titled_row, topk_images

log = logging.getLogger("interp")


class AttributionMismatchError(RuntimeError):
    """Our activations or gradients differ from Captum's by more than the tolerance."""


class AttributionCheck(InterpretationCallback):
    """Cross-check our layer capture against Captum, and attribute the units' top examples.

    Logs ``interp/captum/<layer>/activation_maxdiff`` and ``.../grad_maxdiff`` (max absolute
    differences on ``n_check`` real inputs; above ``tolerance`` this raises
    :class:`AttributionMismatchError`, or logs an error when ``mismatch="log"``); per unit the
    image ``interp/attribution/<layer>/unit_XXX`` (examples | integrated gradients | gradient,
    red positive, blue negative) and the scalars ``.../ig_completeness_error`` (relative, mean
    over the examples), ``.../randomization_spearman_ig``, ``.../randomization_spearman_grad``
    and ``.../same_model_spearman_ig`` (model randomization of all layers at once, Adebayo et al.
    2018: a faithful map changes when the weights do, so a low ``randomization`` value is good).
    """

    kind = "attribution"

    def __init__(self, layer: str, units="0-63", k: int = 8, n_check: int = 64, split: str = "train",
                 ig_steps: int = 64, internal_batch_size: int = 256, tolerance: float = 1e-5,
                 mismatch: str = "raise", sanity_check: bool = True, batch_size: int = 1024, on_error: str = "raise",
                 **kwargs):
        super().__init__(layer, units, on_error=on_error, **kwargs)
        if mismatch not in ("raise", "log"):
            raise ValueError(f"mismatch must be 'raise' or 'log', got {mismatch!r}")
        self.k, self.n_check, self.split, self.ig_steps = k, n_check, split, ig_steps
        self.internal_batch_size, self.tolerance, self.mismatch = internal_batch_size, tolerance, mismatch
        self.sanity_check, self.batch_size = sanity_check, batch_size
        self.metrics: dict[str, float] = {}

    def interpret(self, trainer, pl_module, reporter, step):
        dataset = self.data(trainer, self.split)
        units = self.resolve_units(pl_module, dataset)
        check = agreement(pl_module, self.layer, example_input(dataset, self.n_check), units[:8])
        self.metrics = {"activation_maxdiff": check.activation_maxdiff, "grad_maxdiff": check.grad_maxdiff}
        reporter.scalar(f"interp/captum/{self.layer}/activation_maxdiff", check.activation_maxdiff, step)
        reporter.scalar(f"interp/captum/{self.layer}/grad_maxdiff", check.grad_maxdiff, step)
        if not check.ok(self.tolerance):
            message = (f"interp: captured values of {self.layer} disagree with Captum: activation max diff "
                       f"{check.activation_maxdiff:.3g}, gradient max diff {check.grad_maxdiff:.3g} "
                       f"(tolerance {self.tolerance:g}); the pictures of this layer cannot be trusted")
            if self.mismatch == "raise":
                raise AttributionMismatchError(message)
            log.error(message)

        cached = shared_results(trainer).get(("topk", self.layer))
        if cached is not None and set(units) <= set(cached[0].units.tolist()):
            topk, dataset = cached
        else:
            topk = mine_for_trainer(trainer, pl_module, self.layer, units, self.k, dataset, self.batch_size)
        rows = {u: i for i, u in enumerate(topk.units.tolist())}
        completeness, rand_ig, rand_grad, same = [], [], [], []
        randomized = randomized_copy(pl_module) if self.sanity_check else None  # one copy for every unit
        for unit in units:
            examples = topk_images(topk, dataset, rows[unit])[: self.k]
            ig, err = neuron_attributions(pl_module, self.layer, unit, examples, method="ig", n_steps=self.ig_steps,
                                          internal_batch_size=self.internal_batch_size)
            sal, _ = neuron_attributions(pl_module, self.layer, unit, examples, method="saliency")
            tag = unit_tag("attribution", self.layer, unit)
            picture = titled_row([grid(examples, nrow=self.k, min_size=56),
                                  grid(heatmap_overlay(examples, ig), nrow=self.k, min_size=56),
                                  grid(heatmap_overlay(examples, sal), nrow=self.k, min_size=56)],
                                 ["maximal activation examples", "integrated gradients", "gradient (saliency)"],
                                 title=f"{self.layer} unit {unit}")
            reporter.image(tag, picture, step)
            reporter.scalar(tag + "/ig_completeness_error", err.mean(), step)
            completeness.append(float(err.mean()))
            if self.sanity_check:
                r_ig = randomization_check(pl_module, self.layer, unit, examples, method="ig", n_steps=self.ig_steps,
                                           internal_batch_size=self.internal_batch_size, randomized=randomized,
                                           trained=ig)
                r_grad = randomization_check(pl_module, self.layer, unit, examples, method="saliency",
                                             randomized=randomized, trained=sal)
                reporter.scalar(tag + "/randomization_spearman_ig", r_ig["randomized"], step)
                reporter.scalar(tag + "/randomization_spearman_grad", r_grad["randomized"], step)
                reporter.scalar(tag + "/same_model_spearman_ig", r_ig["same_model"], step)
                rand_ig.append(r_ig["randomized"])
                rand_grad.append(r_grad["randomized"])
                same.append(r_ig["same_model"])
        mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
        self.metrics.update(ig_completeness_error=mean(completeness), randomization_spearman_ig=mean(rand_ig),
                            randomization_spearman_grad=mean(rand_grad), same_model_spearman_ig=mean(same))
        for name in ("ig_completeness_error", "randomization_spearman_ig", "randomization_spearman_grad"):
            reporter.scalar(f"interp/attribution/{self.layer}/{name}", self.metrics[name], step)
        log.info("interp: %s captum check %s", self.layer, {k: round(v, 8) for k, v in self.metrics.items()})
