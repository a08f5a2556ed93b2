"""Feature visualization: the input optimized for each unit (activation maximization), in one or
more views. A view is a parameterization of the image, not another algorithm:

* ``plain``: the default parameterization of :func:`interp.optvis.render` (Fourier basis,
  colour decorrelation), with the configured TV/L1 penalties: what maximizes the unit;
* ``prior``: the latent space of a generator learned on the data (:mod:`interp.optvis.latent`),
  inside a trust region: what *data-like* input maximizes the unit. Given the layer's top-k
  examples and a prior that can encode (``ImagePrior``), each unit starts from the mean code of its
  top examples and stays near it: a digit like the ones the unit prefers, pushed further. A prior
  can bias the picture toward the data; the plain view stays beside it;
* ``maco``: only the Fourier phase is optimized, the magnitude is the data's (Fel et al. 2023);
* ``prototype``: for conv channels, the unit's top-k examples shifted so that their peaks (the
  position of each example's spatial maximum) coincide at the modal peak, averaged into a
  prototype, then accentuated for the unit at that peak
  (:func:`interp.optvis.neuron.accentuate_prototypes`): a digit-like image that excites the channel
  more than its k-th best example (benchmarks/conv_legibility.py). It needs the layer's top-k
  examples (``examples``; :class:`~interp.callbacks.FeatureVisualization` mines them when no top-k
  ran before it). Without positions (a dense layer, or examples reduced by the mean over
  positions) the prototype is the plain mean of the top-k and the objective the unit's
  (``kind="channel"``); without examples the view is skipped with one warning.

For small grey conv nets (``model=cnn``) the plain view reads better with ``kind="peak"`` (Lucid's
``neuron`` objective at each channel's modal peak), ``plain_param="dark"``
(:func:`interp.optvis.neuron.dark_image`), ``l1_relative=True`` (the L1 weight in units of each
channel's k-th best activation), lr 0.01 and no transforms (configs/model/cnn.yaml).

Every activation this module reports is the statistic the top-k ranks by: for conv channels the
spatial maximum of the channel map (``spatial="max"``, the default), whatever objective was
optimized, so that views, captions, ``featvis.pt`` and ratios compare like with like.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cached_property

import torch
from torch import nn

from interp.errors import InterpError
from interp.optvis import Capture, Rendering, frozen, model_device
from interp.optvis.templates import weight_template
from interp.records import FeatVisRecord, TemplatesRecord, save_record
from interp.report import Reporter, labelled_grid, upscale
from interp.steps.common import (
    Units,
    image_regularizer,
    model_example,
    resolve_units,
)
from interp.steps.featvis_settings import FeatVisSettings, ViewInputs
from interp.steps.render_views import (
    KINDS,
    PLAIN_PARAMS,
    ROW_MULTIPLE,
    VIEWS,
    ViewRun,
    examples_k,
    kth_best,
    prior_starts,
    render_view,
    unit_peaks,
    view_param,
)
from interp.steps.topk import Examples

__all__ = [
    "KINDS",
    "PLAIN_PARAMS",
    "ROW_MULTIPLE",
    "VIEWS",
    "FeatVisSettings",
    "ViewInputs",
    "ViewRun",
    "Views",
    "activation_name",
    "feature_visualization",
    "like_for_like",
    "prior_starts",
    "render_view",
    "statistic_of",
    "unit_table",
    "view_param",
]

VIEW_NOTES = {
    "plain": "The input that maximizes the unit (plain view)",
    "prior": "The data-like input that maximizes the unit (in the latent space of a prior learned on the data)",
    "maco": "The input that maximizes the unit with the data's Fourier magnitude (MaCo)",
    "prototype": "The unit's top examples aligned at their peak, averaged and accentuated for the unit "
    "(prototype view)",
}
STATISTICS = {"max": "spatial max", "mean": "spatial mean"}


class Views(FeatVisRecord):
    """What :func:`feature_visualization` returns: a :class:`~interp.records.FeatVisRecord` (what
    ``featvis.pt`` holds) that keeps each view's optimization. Per view, the rendering of every unit
    (row ``i`` is ``units[i]``) and the activation it reaches (the like-for-like statistic: for conv
    channels the spatial max, or the mean when the top-k was mined so; ``statistic`` names it, ""
    for a dense layer); ``ratios`` holds, per view, that activation over the unit's dataset
    maximum (when the layer's top-k examples were given). ``images`` are the renderings' final
    images.

    Args:
        units: the units, row ``i`` for ``units[i]``.
        renderings: per view, the :class:`~interp.optvis.render.Rendering` of every unit.
        activations: per view, ``[U]`` the like-for-like activation each unit's image reaches.
        ratios: per view, ``[U]`` that activation over the unit's best dataset activation.
        statistic: the statistic's name (``spatial max``, ``spatial mean``), "" for a dense layer.
    """

    def __init__(
        self,
        units: list[int],
        renderings: dict[str, Rendering],
        activations: dict[str, torch.Tensor],
        ratios: dict[str, torch.Tensor] | None = None,
        statistic: str = "",
    ) -> None:
        self.units = units
        self.renderings = renderings
        self.activations = activations
        self.ratios = {} if ratios is None else ratios
        self.statistic = statistic
        self.columns = {}

    @property
    def images(self) -> dict[str, torch.Tensor]:
        """Per view, ``[U, C, H, W]`` the final images of the renderings."""
        return {view: rendering.image for view, rendering in self.renderings.items()}

    @images.setter
    def images(self, value: dict[str, torch.Tensor]) -> None:
        raise AttributeError("the images of Views are its renderings' images: set renderings")

    def image(self, view: str, unit: int) -> torch.Tensor:
        """The final image of ``unit`` in ``view``.

        Args:
            view: a view rendered.
            unit: a unit rendered.

        Returns:
            ``[C, H, W]`` image.

        Raises:
            KeyError: ``view`` or ``unit`` was not rendered.
        """
        return self.renderings[view].image[self._rows[unit]]

    @cached_property
    def _rows(self) -> dict[int, int]:
        return {unit: row for row, unit in enumerate(self.units)}

    def covers(self, units: Sequence[int], views: Sequence[str] = ("plain",)) -> bool:
        """Whether every one of ``units`` was rendered in every one of ``views``.

        Args:
            units: the units wanted.
            views: the views wanted.

        Returns:
            True when these renderings can be reused for them.
        """
        return set(units) <= set(self.units) and set(views) <= set(self.renderings)


def _majority(labels: torch.Tensor) -> str:
    values, counts = labels[labels >= 0].unique(return_counts=True)
    if not len(values):
        return ""
    best = int(counts.argmax())
    return f"{int(values[best])} ({int(counts[best])}/{int((labels >= 0).sum())})"


def activation_name(statistic: str) -> str:
    """``activation (spatial max)``, or ``activation`` for a dense layer (``statistic`` "").

    Args:
        statistic: the statistic's name (:attr:`Views.statistic`).

    Returns:
        The name of the activation, for captions and tables.
    """
    return f"activation ({statistic})" if statistic else "activation"


def unit_table(result: Views, examples: Examples | None) -> str:
    """A markdown table, one row per unit: each view's activation (named by its statistic) and
    ratio to the dataset maximum, and the majority label of the unit's top examples (for
    TensorBoard's TEXT tab).

    Args:
        result: the feature visualization.
        examples: the layer's top-k examples (for the majority labels), or None.

    Returns:
        The table, in markdown.
    """
    views = list(result.renderings)
    labels = examples.labels if examples is not None else None
    what = activation_name(result.statistic)
    head = ["unit", *(f"{v} {what}" for v in views), *(f"{v} / dataset max" for v in views if v in result.ratios)]
    if labels is not None:
        head.append("top-k majority label")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, unit in enumerate(result.units):
        cells = [str(unit), *(f"{float(result.activations[v][row]):.4g}" for v in views)]
        cells += [f"{float(result.ratios[v][row]):.2f}" for v in views if v in result.ratios]
        if labels is not None and examples is not None:
            cells.append(_majority(labels[examples.row(unit)]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def like_for_like(model: nn.Module, layer: str, units: list[int], images: torch.Tensor, spatial: str) -> torch.Tensor:
    """Each unit's activation on ``images`` (row i for ``units[i]``), reduced over positions the
    way the top-k was mined (``max`` or ``mean``), so it compares with the dataset maximum.

    Args:
        model: the network.
        layer: the units' layer.
        units: the unit of each row of ``images``.
        images: ``[U, C, H, W]`` inputs, row ``i`` for ``units[i]``.
        spatial: ``"max"`` or ``"mean"`` (anything but ``"max"`` gives the mean).

    Returns:
        ``[U]`` float activations on the CPU.
    """
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        acts = cap(images.to(model_device(model)))[layer]
    rows = torch.arange(len(units), device=acts.device)
    picked = acts[rows, torch.tensor(units, device=acts.device)]
    if picked.dim() > 1:
        picked = picked.flatten(1)
        picked = picked.amax(1) if spatial == "max" else picked.mean(1)
    return picked.float().cpu()


def statistic_of(model: nn.Module, layer: str, example: torch.Tensor, spatial: str = "max") -> str:
    """The name of the like-for-like statistic of ``layer`` (:data:`STATISTICS`: ``spatial max``
    for conv channels mined with ``spatial="max"``), "" when its units have no positions.

    Args:
        model: the network.
        layer: the units' layer.
        example: an input batch (its first item is run through the model).
        spatial: how the top-k was mined, ``"max"`` or ``"mean"``.

    Returns:
        The statistic's name, or "".
    """
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        acts = cap(example[:1].to(model_device(model)))[layer]
    return STATISTICS.get(spatial, spatial) if acts.dim() > 2 else ""


def feature_visualization(
    model: nn.Module,
    reporter: Reporter,
    layer: str,
    units: Units = None,
    settings: FeatVisSettings | None = None,
    inputs: ViewInputs | None = None,
    *,
    step: int = 0,
    progress: bool = False,
) -> Views:
    """Optimize one input per unit and view (one batched run per view) and log
    ``interp/featvis/<layer>/unit_XXX`` (the first view; others as ``.../<view>/unit_XXX``) with the
    achieved activation (``.../activation``), a grid of all units per view and, given the layer's
    top-k ``inputs.examples``, ``.../ratio_to_dataset_max``. Every activation is the like-for-like
    statistic (:func:`like_for_like`: for conv channels the spatial max, or the mean when the top-k
    was mined so), named in the captions and saved as ``statistic``. Saves
    ``interp/featvis/<layer>/featvis.pt`` (``units``; per view the images, ``activation_<view>`` and
    ``ratio_<view>``). The prior view (``inputs.prior``: an ``ImagePrior`` or a decoder) starts from
    each unit's top examples when it can (:func:`prior_starts`) and runs without ``transforms``: the
    generator already keeps its images natural. The prototype view (:func:`render_prototypes`) needs
    the examples (without them it is skipped with a warning). ``kind="peak"`` optimizes each unit at
    its peak (:func:`unit_peaks`; the centre, ``unit``, with a warning when the examples have no
    positions); ``l1_relative`` multiplies ``l1_weight`` by each unit's k-th best dataset activation
    (the plain view's L1 then has the layer's scale). Under torch.distributed each rank renders its
    share of the units (in chunks, see :func:`render_view`) and every rank ends with all of them; only
    rank zero writes.

    Args:
        model: the network.
        reporter: where the images, histograms, table and tensors go.
        layer: the units' layer.
        units: unit numbers (a list or range); None: every unit.
        settings: the :class:`FeatVisSettings` (a mapping of them is built into one; None: the defaults).
        inputs: the prior, the MaCo magnitude and the layer's top-k examples (units they lack are mined).
        step: the step the logs are filed under.
        progress: show a progress bar.

    Returns:
        The :class:`Views`.

    Raises:
        InterpError: settings that cannot work (:class:`~interp.settings.SettingsError`); no input
            shape (neither the model's ``example_input_array`` nor ``settings.shape``); a unit out of
            range; the prior view without a prior.
    """
    settings = FeatVisSettings.build(settings, "feature_visualization")
    inputs = inputs if inputs is not None else ViewInputs()
    example = model_example(model)
    if settings.shape is not None:
        example = torch.zeros(1, *settings.shape)
    if example is None:
        raise InterpError(
            f"feature visualization of {layer} needs the input shape: set the model's "
            "example_input_array or pass shape=(C, H, W)"
        )
    unit_list = resolve_units(model, layer, units, example)
    examples = inputs.examples
    if examples is not None and not examples.covers(unit_list):  # reuse what exists, mine the rest
        examples = examples.extended(model, layer, unit_list)
    spatial = examples.spatial if examples is not None else "max"
    result = Views(unit_list, {}, {}, statistic=statistic_of(model, layer, example, spatial))
    views = list(settings.views)
    starts = prior_starts(inputs.prior, examples, unit_list) if "prior" in views else None
    if "prototype" in views and examples_k(examples, unit_list) < 1:
        warnings.warn(
            f"feature visualization of {layer}: the prototype view needs the layer's top-k examples "
            "(give examples, or run a TopKExamples first); skipped",
            stacklevel=2,
        )
        views.remove("prototype")
    kind = settings.kind
    peaks = unit_peaks(examples, unit_list) if kind == "peak" else None
    if kind == "peak" and peaks is None:
        warnings.warn(
            f"feature visualization of {layer}: kind='peak' needs the layer's top-k examples with positions "
            "(a conv layer mined with spatial='max'); optimizing the centre position (kind='unit') instead",
            stacklevel=2,
        )
        kind = "unit"
    l1_weight, l1_weights = settings.l1_weight, None
    if settings.l1_relative and l1_weight:
        kth = kth_best(examples, unit_list)
        if kth is None:
            warnings.warn(
                f"feature visualization of {layer}: l1_relative needs the layer's top-k examples; "
                f"l1_weight {l1_weight} is used as it is",
                stacklevel=2,
            )
        else:
            l1_weights = float(l1_weight) * kth.clamp(min=0)
    found = ViewInputs(inputs.prior, inputs.magnitude, examples)
    for index, view in enumerate(views):
        run = ViewRun(starts, peaks)
        if view == "plain":
            run.regularizer = image_regularizer(settings.tv_weight, 0.0 if l1_weights is not None else l1_weight)
            run.l1_weights = l1_weights
        # the prior view runs without transforms: the generator keeps its images natural
        own = settings.replace(kind=kind, transforms=None if view == "prior" else settings.transforms)
        rendering = render_view(model, layer, unit_list, view, own, found, run, progress)
        activations = like_for_like(model, layer, unit_list, rendering.image, spatial)
        result.renderings[view], result.activations[view] = rendering, activations
        if examples is not None and examples.covers(unit_list):
            best = torch.stack([examples.top.values[examples.row(u), 0] for u in unit_list]).float()
            result.ratios[view] = activations / best.where(best != 0, torch.full_like(best, float("nan")))
        prefix = f"featvis/{layer}" if index == 0 else f"featvis/{layer}/{view}"
        what = activation_name(result.statistic)
        for row, unit in enumerate(unit_list):
            ratio = result.ratios.get(view)
            shown = f", {float(ratio[row]):.2f}x the best training example's" if ratio is not None else ""
            reporter.image(
                f"{prefix}/unit_{unit:03d}",
                upscale(rendering.image[row], 112),
                step,
                description=f"{VIEW_NOTES[view]} for {layer} unit {unit}: {what} {float(activations[row]):.3g}{shown}.",
            )
        reporter.image(
            f"{prefix}/all",
            labelled_grid(rendering.image, [str(u) for u in unit_list], min_size=56),
            step,
            description=f"{VIEW_NOTES[view]}, every unit of {layer} (labelled by unit number).",
        )
        reporter.histogram(f"{prefix}/activation", activations, step)
        if view in result.ratios:
            reporter.histogram(f"{prefix}/ratio_to_dataset_max", result.ratios[view], step)
    save_record(reporter, layer, result)
    reporter.text(f"featvis/{layer}/table", unit_table(result, examples), step)
    try:  # a layer that reads the input directly: its weights are an exact, free picture of each unit
        weights = weight_template(model, layer, unit_list)
    except ValueError:
        weights = None
    if weights is not None:
        save_record(reporter, layer, TemplatesRecord(list(unit_list), weights))
    return result
