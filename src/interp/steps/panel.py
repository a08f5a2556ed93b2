"""The unit panel: a unit's maximal-activation examples beside the inputs optimized for it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.optvis.templates import weight_template
from interp.report import Reporter, signed_with_legend, titled_row, topk_grid, upscale
from interp.steps.common import Units, example_input, resolve_units, unit_tag
from interp.steps.featvis import Views, activation_name, feature_visualization, like_for_like, statistic_of
from interp.steps.topk import Examples, mine

VIEW_TITLES = {"plain": "plain", "prior": "data prior", "maco": "MaCo", "prototype": "prototype"}
#: Short names of the like-for-like statistics in the captions (the title says them in full).
SHORT_STATISTICS = {"spatial max": "max", "spatial mean": "mean"}


def _templates(model: nn.Module, layer: str, units: list[int]) -> torch.Tensor | None:
    """The units' weights as images when the layer reads the input directly (``dense_1``)."""
    try:
        return weight_template(model, layer, units)
    except ValueError:
        return None


def unit_panels(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    *,
    layer: str,
    units: Units = None,
    k: int = 16,
    batch_size: int = 1024,
    views: Sequence[str] = ("plain",),
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    transforms: Callable | str | None = "default",
    tv_weight: float = 0.0,
    l1_weight: float = 0.0,
    kind: str = "channel",
    plain_param: str = "default",
    l1_relative: bool = False,
    prior: nn.Module | None = None,
    prior_max_norm: float | None = None,
    examples: Examples | None = None,
    rendering: Views | None = None,
    step: int = 0,
) -> dict[int, Path | None]:
    """Log ``interp/panel/<layer>/unit_XXX`` per unit: its ``k`` best examples of ``dataset``, then
    the input optimized for it in each of ``views`` (captioned with its activation and its ratio to
    the unit's dataset maximum, the same statistic on both sides: for conv channels the spatial max,
    named in each caption and in the title) and, for a layer that reads the input directly, its
    weights. ``examples`` and ``rendering``, when given and covering the units and views, are used
    instead of mining and rendering again; ``kind``, ``plain_param``, ``l1_relative`` as in
    :func:`~interp.steps.featvis.feature_visualization`. Returns the PNG path of each unit.

    Args:
        model: the network.
        dataset: the data the examples are mined from.
        reporter: where the panels go.
        layer: the units' layer.
        units: unit numbers (a list or range); None: every unit.
        k: examples per unit.
        batch_size: inference batch size for mining.
        views: the views of the optimized inputs, in order.
        steps: optimization steps per view.
        lr: learning rate.
        seed: seeds the optimization.
        transforms: the transforms of :func:`interp.optvis.render`.
        tv_weight: the plain view's total-variation penalty.
        l1_weight: the plain view's L1 penalty.
        kind: what is optimized for a unit (``channel``, ``unit`` or ``peak``).
        plain_param: the plain view's parameterization.
        l1_relative: ``l1_weight`` in units of each unit's k-th best dataset activation.
        prior: an ``ImagePrior`` or a decoder, for the prior view.
        prior_max_norm: the prior view's trust radius around the origin.
        examples: the layer's top-k examples to reuse, or None.
        rendering: a feature visualization to reuse, or None.
        step: the step the panels are filed under.

    Returns:
        ``{unit: path}``: the PNG written for each unit (None where the reporter is disabled,
        e.g. off rank zero).

    Raises:
        InterpError: a unit out of range, or the settings
            :func:`~interp.steps.featvis.feature_visualization` rejects.
    """
    unit_list = resolve_units(model, layer, units, example_input(dataset))
    if examples is None or not examples.covers(unit_list, k):
        examples = Examples(mine(model, layer, unit_list, k, dataset, batch_size), None, dataset)
    if rendering is None or not rendering.covers(unit_list, views):
        rendering = feature_visualization(
            model,
            Reporter(reporter.run_dir, enabled=False),
            layer=layer,
            units=unit_list,
            views=views,
            steps=steps,
            lr=lr,
            seed=seed,
            transforms=transforms,
            tv_weight=tv_weight,
            l1_weight=l1_weight,
            kind=kind,
            plain_param=plain_param,
            l1_relative=l1_relative,
            prior=prior,
            prior_max_norm=prior_max_norm,
            examples=examples,
        )
    # one batched forward pass per view for the captions, one look at the weights
    reached = {
        view: like_for_like(
            model, layer, unit_list, torch.stack([rendering.image(view, u) for u in unit_list]), examples.spatial
        )
        for view in views
    }
    templates = _templates(model, layer, unit_list)
    statistic = statistic_of(model, layer, example_input(dataset), examples.spatial)
    stat = f"{SHORT_STATISTICS.get(statistic, statistic)} " if statistic else ""
    about = f" (activation: {statistic} of the channel map)" if statistic else ""
    paths: dict[int, Path | None] = {}
    for row, unit in enumerate(unit_list):
        best = float(examples.top.values[examples.row(unit), 0])
        left = upscale(topk_grid(examples.top, examples.dataset, examples.row(unit), nrow=4), 256)
        pictures, titles = [left], [f"top {examples.top.k} (best: {stat}{best:.3g})"]
        for view in views:
            image = rendering.image(view, unit)
            value = float(reached[view][row])
            ratio = f", {value / best:.2f}x best" if best > 0 else ""
            pictures.append(upscale(image, int(left.shape[-2])))
            titles.append(f"{VIEW_TITLES.get(view, view)}: {stat}{value:.3g}{ratio}")
        if templates is not None:
            pictures.append(signed_with_legend(templates[row], size=int(left.shape[-2])))
            titles.append("weights (red +, blue -)")
        img = titled_row(pictures, titles, title=f"{layer} unit {unit}{about}")
        paths[unit] = reporter.image(
            unit_tag("panel", layer, unit),
            img,
            step,
            description=f"{layer} unit {unit}: its best examples of the data beside the inputs optimized for it, "
            f"each captioned with the {activation_name(statistic)} it reaches and its ratio to the best "
            "training example's.",
        )
    return paths
