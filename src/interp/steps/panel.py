"""The unit panel: a unit's maximal-activation examples beside the inputs optimized for it."""

from __future__ import annotations

from collections.abc import Callable  # noqa: F401  (the inherited fields' annotations name it; pdoc resolves them here)
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.optvis.templates import weight_template
from interp.report import Reporter, signed_with_legend, titled_row, topk_grid, upscale
from interp.steps.common import Units, example_input, resolve_units, unit_tag
from interp.steps.featvis import Views, activation_name, feature_visualization, like_for_like, statistic_of
from interp.steps.featvis_settings import FeatVisSettings, ViewInputs
from interp.steps.topk import Examples, mine

__all__ = ["PanelInputs", "PanelSettings", "unit_panels"]

VIEW_TITLES = {"plain": "plain", "prior": "data prior", "maco": "MaCo", "prototype": "prototype"}
#: Short names of the like-for-like statistics in the captions (the title says them in full).
SHORT_STATISTICS = {"spatial max": "max", "spatial mean": "mean"}


def _templates(model: nn.Module, layer: str, units: list[int]) -> torch.Tensor | None:
    """The units' weights as images when the layer reads the input directly (``dense_1``)."""
    try:
        return weight_template(model, layer, units)
    except ValueError:
        return None


@dataclass(frozen=True)
class PanelSettings(FeatVisSettings):
    """The settings of a unit panel: those of the feature visualization it shows (every field of
    :class:`~interp.steps.featvis_settings.FeatVisSettings`, with ``k`` the examples shown per unit)
    and its own. A feature visualization filed under :meth:`image_key` is reused.

    Attributes:
        batch_size: inference batch size for mining the examples (>= 1; does not change them).
    """

    batch_size: int = 1024

    def check(self) -> None:
        """Refuse values that cannot work.

        Raises:
            SettingsError: what :class:`FeatVisSettings` refuses, or ``batch_size`` below 1.
        """
        super().check()
        self.at_least("batch_size", 1)


@dataclass
class PanelInputs(ViewInputs):
    """What a unit panel reads besides its settings: the views' inputs and results to reuse.

    Attributes:
        rendering: a feature visualization of the same settings to reuse, or None.
    """

    rendering: Views | None = None


def unit_panels(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    layer: str,
    units: Units = None,
    settings: PanelSettings | None = None,
    inputs: PanelInputs | None = None,
    *,
    step: int = 0,
) -> dict[int, Path | None]:
    """Log ``interp/panel/<layer>/unit_XXX`` per unit: its ``settings.k`` best examples of
    ``dataset``, then the input optimized for it in each of ``settings.views`` (captioned with its
    activation and its ratio to the unit's dataset maximum, the same statistic on both sides: for
    conv channels the spatial max, named in each caption and in the title) and, for a layer that
    reads the input directly, its weights. ``inputs.examples`` and ``inputs.rendering``, when given
    and covering the units and views, are used instead of mining and rendering again (rendering with
    :func:`~interp.steps.featvis.feature_visualization` and these settings). Returns the PNG path of
    each unit.

    Args:
        model: the network.
        dataset: the data the examples are mined from.
        reporter: where the panels go.
        layer: the units' layer.
        units: unit numbers (a list or range); None: every unit.
        settings: the :class:`PanelSettings` (a mapping of them is built into one; None: the defaults).
        inputs: the prior and MaCo magnitude of the views, the layer's top-k examples and a feature
            visualization to reuse.
        step: the step the panels are filed under.

    Returns:
        ``{unit: path}``: the PNG written for each unit (None where the reporter is disabled,
        e.g. off rank zero).

    Raises:
        InterpError: a unit out of range, or settings that cannot work.
    """
    settings = PanelSettings.build(settings, "unit_panels")
    inputs = inputs if inputs is not None else PanelInputs()
    k, views = settings.k, settings.views
    unit_list = resolve_units(model, layer, units, example_input(dataset))
    examples, rendering = inputs.examples, inputs.rendering
    if examples is None or not examples.covers(unit_list, k):
        examples = Examples(mine(model, layer, unit_list, k, dataset, settings.batch_size), None, dataset)
    if rendering is None or not rendering.covers(unit_list, views):
        rendering = feature_visualization(
            model,
            Reporter(reporter.run_dir, enabled=False),
            layer,
            unit_list,
            settings,
            ViewInputs(inputs.prior, inputs.magnitude, examples),
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
