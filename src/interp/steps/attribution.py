"""Attribution of each unit's top examples, cross-checked against Captum and sanity-checked by
model randomization (Adebayo et al. 2018)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.errors import InterpError
from interp.optvis.attribution import agreement, neuron_attributions, randomization_check, randomized_copy
from interp.report import Reporter, grid, heatmap_overlay, titled_row, topk_images
from interp.steps.common import Units, example_input, gather_shares, my_share, resolve_units, unit_tag
from interp.steps.topk import Examples, mine

log = logging.getLogger(__name__)


class AttributionMismatchError(InterpError, RuntimeError):
    """Our activations or gradients differ from Captum's by more than the tolerance."""


@dataclass
class AttributionSummary:
    """What :func:`attribute_units` returns: the Captum differences, the units cross-checked,
    and per-metric means over the units."""

    activation_maxdiff: float
    grad_maxdiff: float
    checked_units: list[int]
    means: dict[str, float] = field(default_factory=dict)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def attribute_units(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    *,
    layer: str,
    units: Units = None,
    k: int = 8,
    n_check: int = 64,
    check_units: int | None = 8,
    ig_steps: int = 64,
    internal_batch_size: int = 256,
    tolerance: float = 1e-5,
    on_mismatch: str = "raise",
    sanity_check: bool = True,
    batch_size: int = 1024,
    examples: Examples | None = None,
    step: int = 0,
) -> AttributionSummary:
    """Cross-check our layer capture against Captum on ``n_check`` inputs (activations of every
    unit; input gradients of the first ``check_units`` units, None: all), then log per unit the
    picture ``interp/attribution/<layer>/unit_XXX`` (examples | integrated gradients | gradient,
    red positive, blue negative) and the scalars ``.../ig_completeness_error``,
    ``.../randomization_spearman_ig``, ``.../randomization_spearman_grad`` and
    ``.../same_model_spearman_ig``. A mismatch above ``tolerance`` raises
    :class:`AttributionMismatchError` (``on_mismatch="raise"``) or logs a warning (``"warn"``)."""
    if on_mismatch not in ("raise", "warn"):
        raise ValueError(f"on_mismatch must be 'raise' or 'warn', got {on_mismatch!r}")
    unit_list = resolve_units(model, layer, units, example_input(dataset))
    checked = unit_list if check_units is None else unit_list[:check_units]
    check = agreement(model, layer, example_input(dataset, n_check), checked)
    summary = AttributionSummary(check.activation_maxdiff, check.grad_maxdiff, checked)
    reporter.scalar(f"captum/{layer}/activation_maxdiff", check.activation_maxdiff, step)
    reporter.scalar(f"captum/{layer}/grad_maxdiff", check.grad_maxdiff, step)
    if not check.ok(tolerance):
        message = (
            f"captured values of {layer} disagree with Captum: activation max diff "
            f"{check.activation_maxdiff:.3g}, gradient max diff {check.grad_maxdiff:.3g} "
            f"(tolerance {tolerance:g}); the pictures of this layer cannot be trusted"
        )
        if on_mismatch == "raise":
            raise AttributionMismatchError(message)
        log.warning(message)

    if examples is None or not examples.covers(unit_list, k):
        examples = Examples(mine(model, layer, unit_list, k, dataset, batch_size), None, dataset)
    metrics: dict[str, list[float]] = {
        "ig_completeness_error": [],
        "randomization_spearman_ig": [],
        "randomization_spearman_grad": [],
        "same_model_spearman_ig": [],
    }
    randomized = randomized_copy(model) if sanity_check else None  # one copy for every unit
    records = []  # this rank's share of the units; rank zero writes everyone's
    for unit in my_share(unit_list):
        images = topk_images(examples.top, examples.dataset, examples.row(unit))[:k]
        ig = neuron_attributions(
            model, layer, unit, images, method="ig", n_steps=ig_steps, internal_batch_size=internal_batch_size
        )
        sal = neuron_attributions(model, layer, unit, images, method="saliency")
        picture = titled_row(
            [
                grid(images, nrow=k, min_size=56),
                grid(heatmap_overlay(images, ig.maps), nrow=k, min_size=56),
                grid(heatmap_overlay(images, sal.maps), nrow=k, min_size=56),
            ],
            ["maximal activation examples", "integrated gradients", "gradient (saliency)"],
            title=f"{layer} unit {unit}",
        )
        assert ig.completeness is not None
        values = {"ig_completeness_error": float(ig.completeness.mean())}
        if randomized is not None:
            r_ig = randomization_check(
                model,
                layer,
                unit,
                images,
                method="ig",
                n_steps=ig_steps,
                internal_batch_size=internal_batch_size,
                randomized=randomized,
                trained=ig.maps,
            )
            r_grad = randomization_check(
                model, layer, unit, images, method="saliency", randomized=randomized, trained=sal.maps
            )
            values.update(
                randomization_spearman_ig=r_ig.randomized,
                randomization_spearman_grad=r_grad.randomized,
                same_model_spearman_ig=r_ig.same_model,
            )
        records.append((unit, picture, values, images, ig.maps.sum(1), sal.maps.sum(1)))
    saved: dict[str, list[torch.Tensor]] = {"examples": [], "ig": [], "saliency": []}
    for unit, picture, values, images, ig_map, sal_map in (r for part in gather_shares(records) for r in part):
        tag = unit_tag("attribution", layer, unit)
        reporter.image(
            tag,
            picture,
            step,
            description=f"{layer} unit {unit}: its top examples, their integrated gradients and saliency maps "
            "(red: raises the unit, blue: lowers it; each map scaled to its largest magnitude).",
        )
        for name, value in values.items():
            metrics[name].append(value)
        saved["examples"].append(images)
        saved["ig"].append(ig_map)
        saved["saliency"].append(sal_map)
    summary.means = {name: _mean(v) for name, v in metrics.items()}
    if all(len(v) == len(unit_list) and len({tuple(t.shape) for t in v}) == 1 for v in saved.values()):
        reporter.save(
            f"attribution/{layer}/attribution.pt",
            {"units": torch.tensor(unit_list), **{name: torch.stack(v) for name, v in saved.items()}},
        )
    for name, per_unit in metrics.items():
        reporter.histogram(f"attribution/{layer}/{name}", torch.tensor(per_unit), step)
    for name in ("ig_completeness_error", "randomization_spearman_ig", "randomization_spearman_grad"):
        reporter.scalar(f"attribution/{layer}/mean_{name}", summary.means[name], step)
    log.info("%s: Captum check and attribution means %s", layer, {k: round(v, 8) for k, v in summary.means.items()})
    return summary
