"""Attribution of each unit's top examples, cross-checked against Captum and sanity-checked by
model randomization (Adebayo et al. 2018)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.errors import InterpError
from interp.optvis.attribution import agreement, neuron_attributions, randomization_check, randomized_copy
from interp.report import Reporter, colour_legend, grid, heatmap_overlay, titled_column, titled_row, topk_images
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


SHORT = {"saliency": "grad"}
TITLES = {
    "ig": "integrated gradients",
    "saliency": "gradient (saliency)",
    "deeplift": "DeepLift",
    "occlusion": "occlusion",
    "gradcam": "Grad-CAM",
}


def attribution_picture(images: torch.Tensor, maps: dict[str, torch.Tensor], title: str) -> torch.Tensor:
    """The examples in the first row, then one row per method: each map over its image (every map
    scaled to its own largest magnitude), with a colour bar from -max to +max."""
    k = images.shape[0]
    rows = [grid(images, nrow=k, min_size=56)] + [
        grid(heatmap_overlay(images, m), nrow=k, min_size=56) for m in maps.values()
    ]
    titles = ["maximal activation examples", *(TITLES.get(m, m) for m in maps)]
    stacked = titled_column(rows, titles)
    return titled_row([stacked, colour_legend(int(stacked.shape[-2]))], ["", ""], title=title)


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
    ig_steps: int = 32,
    internal_batch_size: int = 256,
    tolerance: float = 1e-5,
    on_mismatch: str = "raise",
    sanity_check: bool = True,
    sanity_units: int | None = 16,
    batch_size: int = 1024,
    examples: Examples | None = None,
    methods: Sequence[str] = ("ig", "saliency"),
    step: int = 0,
) -> AttributionSummary:
    """Cross-check our layer capture against Captum on ``n_check`` inputs (activations of every
    unit; input gradients of the first ``check_units`` units, None: all), then log per unit the
    picture ``attribution/<layer>/unit_XXX`` (the examples, then one row of maps per method of
    ``methods``: ``ig``, ``saliency``, ``deeplift``, ``occlusion``, ``gradcam``; red positive,
    blue negative, with a colour bar) and per-layer histograms and means of the IG completeness
    error and, per method, the model-randomization Spearman correlation (Adebayo et al. 2018; on the
    first ``sanity_units`` units, None: all; it is a statistic of the layer, and costs two more
    attributions per unit and method). A
    mismatch above ``tolerance`` raises :class:`AttributionMismatchError` (``on_mismatch="raise"``)
    or logs a warning (``"warn"``)."""
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
    metrics: dict[str, list[float]] = defaultdict(list)
    randomized = randomized_copy(model) if sanity_check else None  # one copy for every unit
    sane = set(unit_list if sanity_units is None else unit_list[:sanity_units])
    records = []  # this rank's share of the units; rank zero writes everyone's
    for unit in my_share(unit_list):
        images = topk_images(examples.top, examples.dataset, examples.row(unit))[:k]
        values: dict[str, float] = {}
        maps: dict[str, torch.Tensor] = {}
        for method in methods:
            options = {"n_steps": ig_steps, "internal_batch_size": internal_batch_size} if method == "ig" else {}
            result = neuron_attributions(model, layer, unit, images, method=method, **options)
            maps[method] = result.maps
            if result.completeness is not None:
                values["ig_completeness_error"] = float(result.completeness.mean())
            if randomized is not None and unit in sane:
                sanity = randomization_check(
                    model, layer, unit, images, method=method, randomized=randomized, trained=result.maps, **options
                )
                values[f"randomization_spearman_{SHORT.get(method, method)}"] = sanity.randomized
                values[f"same_model_spearman_{SHORT.get(method, method)}"] = sanity.same_model
        picture = attribution_picture(images, maps, title=f"{layer} unit {unit}")
        records.append((unit, picture, values, images, {m: t.sum(1) for m, t in maps.items()}))
    saved: dict[str, list[torch.Tensor]] = defaultdict(list)
    for unit, picture, values, images, unit_maps in (r for part in gather_shares(records) for r in part):
        tag = unit_tag("attribution", layer, unit)
        reporter.image(
            tag,
            picture,
            step,
            description=f"{layer} unit {unit}: its top examples and their attribution maps "
            f"({', '.join(methods)}); red raises the unit, blue lowers it, on the scale of the colour bar.",
        )
        for name, value in values.items():
            metrics[name].append(value)
        saved["examples"].append(images)
        for method, unit_map in unit_maps.items():
            saved[method].append(unit_map)
    summary.means = {name: _mean(v) for name, v in metrics.items()}
    if all(len(v) == len(unit_list) and len({tuple(t.shape) for t in v}) == 1 for v in saved.values()):
        reporter.save(
            f"attribution/{layer}/attribution.pt",
            {"units": torch.tensor(unit_list), **{name: torch.stack(v) for name, v in saved.items()}},
        )
    for name, per_unit in metrics.items():
        reporter.histogram(f"attribution/{layer}/{name}", torch.tensor(per_unit), step)
    for name, mean in summary.means.items():
        if not name.startswith("same_model"):
            reporter.scalar(f"attribution/{layer}/mean_{name}", mean, step)
    log.info("%s: Captum check and attribution means %s", layer, {k: round(v, 8) for k, v in summary.means.items()})
    return summary
