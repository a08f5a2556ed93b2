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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.optvis import Capture, Rendering, frozen, model_device, render, render_units
from interp.optvis import objectives as obj
from interp.optvis.accentuate import accentuate
from interp.optvis.latent import LatentParam, mean_codes
from interp.optvis.maco import MacoParam
from interp.optvis.memory import PROBE_UNITS, MemoryMeter, fitting_batch, memory_meter
from interp.optvis.neuron import accentuate_prototypes, dark_image, neuron, peak_positions
from interp.optvis.param import image as image_param
from interp.optvis.param import unit_seeds
from interp.optvis.templates import weight_template
from interp.report import Reporter, inputs_at, labelled_grid, upscale
from interp.steps.common import (
    Units,
    gather_shares,
    image_regularizer,
    model_example,
    my_share,
    resolve_units,
)
from interp.steps.topk import Examples

VIEWS = ("plain", "prior", "maco", "prototype")
VIEW_NOTES = {
    "plain": "The input that maximizes the unit (plain view)",
    "prior": "The data-like input that maximizes the unit (in the latent space of a prior learned on the data)",
    "maco": "The input that maximizes the unit with the data's Fourier magnitude (MaCo)",
    "prototype": "The unit's top examples aligned at their peak, averaged and accentuated for the unit "
    "(prototype view)",
}
#: What a view optimizes for a unit: ``channel`` (the mean over positions; a neuron for dense
#: layers), ``unit`` (the centre position), ``peak`` (the position where the unit's top-k examples
#: peak most often, :func:`~interp.optvis.neuron.peak_positions`; needs examples with positions).
KINDS = ("channel", "unit", "peak")
#: The plain view's parameterization: ``default`` (:func:`interp.optvis.param.image`) or ``dark``
#: (:func:`interp.optvis.neuron.dark_image`: Fourier 1/f^1.5, a dark start; small grey digits).
PLAIN_PARAMS = ("default", "dark")
#: The prototype view's accentuation (benchmarks/conv_legibility.py): Adam steps, learning rate,
#: weight of the distance to the prototype at the model's first layer, 1/f power of the offset.
PROTOTYPE_STEPS, PROTOTYPE_LR, PROTOTYPE_REG_WEIGHT, PROTOTYPE_DECAY = 128, 0.02, 30.0, 1.5
STATISTICS = {"max": "spatial max", "mean": "spatial mean"}


@dataclass
class Views:
    """What :func:`feature_visualization` returns: per view, the rendering of every unit (row
    ``i`` is ``units[i]``) and the activation it reaches (the like-for-like statistic: for conv
    channels the spatial max, or the mean when the top-k was mined so; ``statistic`` names it, ""
    for a dense layer); ``ratios`` holds, per view, that activation over the unit's dataset
    maximum (when the layer's top-k examples were given)."""

    units: list[int]
    renderings: dict[str, Rendering]
    activations: dict[str, torch.Tensor]
    ratios: dict[str, torch.Tensor] = field(default_factory=dict)
    statistic: str = ""

    def image(self, view: str, unit: int) -> torch.Tensor:
        return self.renderings[view].image[self._rows[unit]]

    @cached_property
    def _rows(self) -> dict[int, int]:
        return {unit: row for row, unit in enumerate(self.units)}

    def covers(self, units: Sequence[int], views: Sequence[str] = ("plain",)) -> bool:
        return set(units) <= set(self.units) and set(views) <= set(self.renderings)


def _majority(labels: torch.Tensor) -> str:
    values, counts = labels[labels >= 0].unique(return_counts=True)
    if not len(values):
        return ""
    best = int(counts.argmax())
    return f"{int(values[best])} ({int(counts[best])}/{int((labels >= 0).sum())})"


def activation_name(statistic: str) -> str:
    """``activation (spatial max)``, or ``activation`` for a dense layer (``statistic`` "")."""
    return f"activation ({statistic})" if statistic else "activation"


def unit_table(result: Views, examples: Examples | None) -> str:
    """A markdown table, one row per unit: each view's activation (named by its statistic) and
    ratio to the dataset maximum, and the majority label of the unit's top examples (for
    TensorBoard's TEXT tab)."""
    views = list(result.renderings)
    labels = examples.labels() if examples is not None else None
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
    way the top-k was mined (``max`` or ``mean``), so it compares with the dataset maximum."""
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
    for conv channels mined with ``spatial="max"``), "" when its units have no positions."""
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        acts = cap(example[:1].to(model_device(model)))[layer]
    return STATISTICS.get(spatial, spatial) if acts.dim() > 2 else ""


def prior_starts(prior: nn.Module | None, examples: Examples | None, units: list[int]) -> torch.Tensor | None:
    """Where the prior view starts for each unit: the mean latent code of its top examples
    ([U, latent_dim], row i for ``units[i]``), when the prior can encode (``ImagePrior.encode``)
    and ``examples`` cover the units; else None (random starts)."""
    encode = getattr(prior, "encode", None)
    if encode is None or examples is None or not examples.covers(units):
        return None
    rows = [examples.top.indices[examples.row(u)] for u in units]
    k = min(int((r >= 0).sum()) for r in rows)
    if k < 1:
        return None
    images = torch.stack([inputs_at(examples.dataset, r[r >= 0][:k].tolist()) for r in rows])
    device = next(iter(prior.parameters()), torch.empty(0)).device  # type: ignore[union-attr]
    return mean_codes(encode, images.to(device)).cpu()


def examples_k(examples: Examples | None, units: list[int]) -> int:
    """How many top examples every unit of ``units`` has (0 without examples covering them)."""
    if examples is None or not examples.covers(units):
        return 0
    return min(int((examples.top.indices[examples.row(u)] >= 0).sum()) for u in units)


def unit_peaks(examples: Examples | None, units: list[int]) -> torch.Tensor | None:
    """Each unit's peak ([U, 2] (y, x), row i for ``units[i]``): the modal position of its top-k
    examples' spatial maxima (:func:`~interp.optvis.neuron.peak_positions`); None without examples
    with positions (a dense layer, or a top-k reduced by the mean)."""
    k = examples_k(examples, units)
    if examples is None or k < 1 or examples.top.positions is None:
        return None
    positions = examples.top.positions[[examples.row(u) for u in units], :k]
    return peak_positions(positions)


def kth_best(examples: Examples | None, units: list[int]) -> torch.Tensor | None:
    """Each unit's k-th best dataset activation ([U], the last of its top-k), or None."""
    k = examples_k(examples, units)
    if examples is None or k < 1:
        return None
    return torch.stack([examples.top.values[examples.row(u), k - 1] for u in units]).float()


def view_param(
    view: str,
    shape: tuple[int, ...],
    units: Sequence[int],
    seed: int,
    prior: nn.Module | None = None,
    magnitude: torch.Tensor | None = None,
    prior_max_norm: float | None = None,
    starts: torch.Tensor | None = None,
    plain_param: str = "default",
) -> nn.Module | None:
    """The parameterization of ``view`` for one image of ``shape`` (C, H, W) per unit, each row
    seeded from (``seed``, unit); None: ``render_units``' default (seeded the same way). ``prior``
    is an ``ImagePrior`` or its decoder; ``starts`` ([len(units), latent_dim]) start the prior
    view's codes (:func:`prior_starts`); ``plain_param`` picks the plain view's
    (:data:`PLAIN_PARAMS`)."""
    seeds = unit_seeds(seed, units)
    if view == "plain":
        if plain_param == "dark":
            return dark_image((len(units), *shape), seed=seeds)
        if plain_param != "default":
            raise InterpError(f"unknown plain_param {plain_param!r}: use {', '.join(PLAIN_PARAMS)}")
        return None
    if view == "prior":
        if prior is None:
            raise InterpError(
                "the prior view needs a learned prior (a decoder); train one with interp.models.train_prior(data)"
            )
        decoder = getattr(prior, "decoder", prior)
        return LatentParam(decoder, batch=len(units), seed=seeds, max_norm=prior_max_norm, start=starts)
    if view == "maco":
        return MacoParam((len(units), *shape), magnitude=magnitude, seed=seeds)
    raise InterpError(f"unknown view {view!r}: use {', '.join(VIEWS)}")


ROW_MULTIPLE = 4
"""Every batch of units is rendered with a multiple of this many rows (the last unit repeated,
the copies dropped): matrix kernels treat a tail of one to three rows with other code than full
blocks (seen on AMD EPYC: a unit's bits depended on whether it ended an odd batch), so padding
makes a unit's result independent of how the units are split across chunks and processes."""


def _first_rows(rendering: Rendering, n: int) -> Rendering:
    """The rendering of the first ``n`` rows of a batch."""
    assert rendering.units is not None and rendering.activations is not None
    return Rendering(
        [image[:n] for image in rendering.images],
        rendering.thresholds,
        rendering.history[:, :n],
        rendering.scores[:n],
        rendering.units[:n],
        rendering.activations[:n],
    )


def _join(parts: list[Rendering], units: list[int]) -> Rendering:
    """One rendering from renderings of consecutive chunks of ``units``."""
    parts = [p for p in parts if p.units]
    images = [torch.cat([p.images[i] for p in parts]) for i in range(len(parts[0].images))]
    activations = [p.activations if p.activations is not None else p.scores for p in parts]
    return Rendering(
        images,
        parts[0].thresholds,
        torch.cat([p.history for p in parts], 1),
        torch.cat([p.scores for p in parts]),
        units,
        torch.cat(activations),
    )


def row_l1(weights: torch.Tensor) -> obj.Objective:
    """``-weights[i] * L1`` for batch row ``i`` (an L1 penalty with one weight per unit)."""
    penalty = obj.l1()

    def fn(acts: obj.Acts) -> torch.Tensor:
        values = penalty(acts)
        return -weights.to(values.device, values.dtype) * values

    return obj.Objective(fn, [obj.INPUT], "-w * l1")


def _render_rows(
    model: nn.Module,
    layer: str,
    rows: list[int],
    kind: str,
    peaks: torch.Tensor | None,
    regularizer: obj.Objective | None,
    **kwargs: Any,
) -> Rendering:
    """``render_units`` for ``kind`` ``channel``/``unit``; for ``peak`` the same with
    :func:`~interp.optvis.neuron.neuron` at ``peaks`` (row i: ``rows[i]`` at ``peaks[i]``)."""
    if kind != "peak":
        return render_units(model, layer, rows, kind=kind, regularizer=regularizer, **kwargs)
    assert peaks is not None
    goal = neuron(layer, rows, peaks)
    shape = tuple(kwargs.pop("shape"))
    param = kwargs.pop("param", None)
    if param is None:
        param = image_param((len(rows), *shape), seed=unit_seeds(kwargs.get("seed", 0), rows))
    result = render(model, goal if regularizer is None else goal + regularizer, param=param, **kwargs)
    result.units = list(rows)
    if regularizer is None:
        result.activations = result.scores.clone()
    else:
        with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
            result.activations = goal(cap(result.image.to(model_device(model)))).cpu()
    return result


def render_prototypes(
    model: nn.Module,
    layer: str,
    rows: list[int],
    examples: Examples,
    k: int,
    seed: int = 0,
    progress: bool = False,
) -> Rendering:
    """The prototype view of ``rows`` (one image per row, each from its unit's best ``k``
    examples alone): with positions, :func:`~interp.optvis.neuron.accentuate_prototypes` (examples
    aligned at the modal peak, neuron objective there); without, the mean of the examples
    accentuated for the unit's channel objective. ``activations`` are the objective's values."""
    indices = [examples.top.indices[examples.row(u), :k].tolist() for u in rows]
    images = torch.stack([inputs_at(examples.dataset, i) for i in indices])  # [R, k, C, H, W]
    settings = dict(
        steps=PROTOTYPE_STEPS,
        lr=PROTOTYPE_LR,
        reg_weight=PROTOTYPE_REG_WEIGHT,
        decay_power=PROTOTYPE_DECAY,
        seed=seed,
        progress=progress,
    )
    positions = examples.top.positions
    if positions is not None:
        where = positions[[examples.row(u) for u in rows], :k]
        acc = accentuate_prototypes(model, layer, rows, images, where, **settings)  # type: ignore[arg-type]
    else:
        seeds = images.float().mean(1).clamp(0, 1)
        acc = accentuate(model, obj.channel(layer, rows), seeds, **settings)  # type: ignore[arg-type]
    return Rendering(acc.images, acc.thresholds, acc.history, acc.scores, list(rows), acc.scores.clone())


def render_view(
    model: nn.Module,
    layer: str,
    units: list[int],
    view: str,
    *,
    image_shape: tuple[int, ...],
    max_batch: int | None = None,
    memory: MemoryMeter | None = None,
    seed: int = 0,
    prior: nn.Module | None = None,
    magnitude: torch.Tensor | None = None,
    prior_max_norm: float | None = None,
    starts: torch.Tensor | None = None,
    regularizer: Any = None,
    progress: bool = False,
    kind: str = "channel",
    peaks: torch.Tensor | None = None,
    l1_weights: torch.Tensor | None = None,
    plain_param: str = "default",
    examples: Examples | None = None,
    **render_kwargs: Any,
) -> Rendering:
    """Render ``units`` in one view, split across torch.distributed ranks (each renders its share)
    and in chunks (bounded memory). Every row is seeded from (``seed``, unit) and the transforms
    from ``seed``, so on the CPU the images are the same bits as one batch in one process.

    Chunks: at most ``max_batch`` units. ``max_batch=None`` on a CUDA model probes: the first chunk
    has :data:`~interp.optvis.memory.PROBE_UNITS` units, its peak memory sizes the others to 80% of
    the free memory (:func:`~interp.optvis.memory.fitting_batch`), and a chunk that still runs out
    of memory is retried at half the size. On the CPU ``None`` renders the share in one batch.
    ``memory`` replaces the CUDA meter (any :class:`~interp.optvis.memory.MemoryMeter`).
    ``starts`` (row i for ``units[i]``) start the prior view; ``peaks`` ([U, 2]) are the positions
    of ``kind="peak"``; ``l1_weights`` ([U]) an L1 penalty per unit added to ``regularizer``; the
    ``prototype`` view reads each unit's top ``examples`` (:func:`render_prototypes`)."""
    if kind not in KINDS:
        raise InterpError(f"unknown kind {kind!r}: use {', '.join(KINDS)}")
    if kind == "peak" and (peaks is None or len(peaks) != len(units)):
        raise InterpError("kind='peak' needs one peak position per unit (the layer's top-k with positions)")
    k = examples_k(examples, units) if view == "prototype" else 0
    if view == "prototype" and k < 1:
        raise InterpError("the prototype view needs the layer's top-k examples of every unit")
    share = my_share(units)
    meter = memory if memory is not None else (memory_meter(model) if max_batch is None else None)
    if max_batch is not None:
        chunk = max_batch
    elif meter is not None:
        chunk = min(PROBE_UNITS, max(1, len(share)))
    else:
        chunk = max(1, len(share))
    probing = max_batch is None and meter is not None
    row_of = {unit: row for row, unit in enumerate(units)}

    def render_chunk(part_units: list[int]) -> Rendering:
        # a batch of one takes other matrix kernels (matrix-vector) than larger batches, and a
        # tail of rows other code than full blocks: pad to ROW_MULTIPLE rows, so a unit's bits do
        # not depend on the split, and keep the first rows
        pad = (-len(part_units)) % ROW_MULTIPLE if len(units) > 1 else 0
        rows = part_units + part_units[-1:] * pad
        index = [row_of[u] for u in rows]
        if view == "prototype":
            assert examples is not None
            rendering = render_prototypes(model, layer, rows, examples, k, seed=seed, progress=progress)
            return _first_rows(rendering, len(part_units)) if pad else rendering
        rows_starts = None if starts is None else starts[index]
        param = view_param(view, image_shape, rows, seed, prior, magnitude, prior_max_norm, rows_starts, plain_param)
        penalty = regularizer
        if l1_weights is not None:
            penalty = row_l1(l1_weights[index]) if penalty is None else penalty + row_l1(l1_weights[index])
        rendering = _render_rows(
            model,
            layer,
            rows,
            kind,
            None if peaks is None else peaks[index],
            penalty,
            seed=seed,
            shape=image_shape,
            param=param,
            progress=progress,
            **render_kwargs,
        )
        return _first_rows(rendering, len(part_units)) if pad else rendering

    parts: list[Rendering] = []
    done = 0
    while done < len(share):
        part_units = share[done : done + chunk]
        if probing and meter is not None:
            meter.reset()
        try:
            parts.append(render_chunk(part_units))
        except torch.OutOfMemoryError:
            if meter is None or chunk == 1:
                raise
            chunk = max(1, chunk // 2)  # the estimate was off: halve and retry this chunk
            probing = False
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        done += len(part_units)
        if probing and meter is not None:
            chunk = fitting_batch(meter.peak(), len(part_units), meter.free())
            probing = False
    gathered = [p for rank_parts in gather_shares(parts) for p in rank_parts]
    return _join(gathered, units)


def feature_visualization(
    model: nn.Module,
    reporter: Reporter,
    *,
    layer: str,
    units: Units = None,
    views: Sequence[str] = ("plain",),
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    transforms: Callable | str | None = "default",
    kind: str = "channel",
    shape: Sequence[int] | None = None,
    tv_weight: float = 0.0,
    l1_weight: float = 0.0,
    l1_relative: bool = False,
    plain_param: str = "default",
    prior: nn.Module | None = None,
    prior_max_norm: float | None = None,
    magnitude: torch.Tensor | None = None,
    examples: Examples | None = None,
    max_batch: int | None = None,
    step: int = 0,
    progress: bool = False,
) -> Views:
    """Optimize one input per unit and view (one batched run per view) and log
    ``interp/featvis/<layer>/unit_XXX`` (the first view; others as ``.../<view>/unit_XXX``) with the
    achieved activation (``.../activation``), a grid of all units per view and, given the layer's
    top-k ``examples``, ``.../ratio_to_dataset_max``. Every activation is the like-for-like
    statistic (:func:`like_for_like`: for conv channels the spatial max, or the mean when the top-k
    was mined so), named in the captions and saved as ``statistic``. Saves
    ``interp/featvis/<layer>/featvis.pt`` (``units``; per view the images, ``activation_<view>`` and
    ``ratio_<view>``). The prior view (``prior``: an ``ImagePrior`` or a decoder) starts from
    each unit's top ``examples`` when it can (:func:`prior_starts`) and runs without
    ``transforms``: the generator already keeps its images natural. The prototype view
    (:func:`render_prototypes`) needs ``examples`` (without them it is skipped with a warning).
    ``kind="peak"`` optimizes each unit at its peak (:func:`unit_peaks`; the centre, ``unit``,
    with a warning when the examples have no positions); ``l1_relative`` multiplies ``l1_weight``
    by each unit's k-th best dataset activation (the plain view's L1 then has the layer's scale);
    ``plain_param`` is the plain view's parameterization (:data:`PLAIN_PARAMS`). Under
    torch.distributed each rank renders its share of the units (in chunks, see :func:`render_view`)
    and every rank ends with all of them; only rank zero writes."""
    if kind not in KINDS:
        raise InterpError(f"unknown kind {kind!r}: use {', '.join(KINDS)}")
    example = model_example(model)
    if shape is not None:
        example = torch.zeros(1, *tuple(shape)[-3:])
    if example is None:
        raise InterpError(
            f"feature visualization of {layer} needs the input shape: set the model's "
            "example_input_array or pass shape=(C, H, W)"
        )
    unit_list = resolve_units(model, layer, units, example)
    image_shape = tuple(example.shape[1:])
    if examples is not None and not examples.covers(unit_list):  # reuse what exists, mine the rest
        examples = examples.extended(model, layer, unit_list)
    spatial = examples.spatial if examples is not None else "max"
    result = Views(unit_list, {}, {}, statistic=statistic_of(model, layer, example, spatial))
    saved: dict[str, Any] = {"units": torch.tensor(unit_list), "statistic": result.statistic}
    starts = prior_starts(prior, examples, unit_list) if "prior" in views else None
    views = list(views)
    if "prototype" in views and examples_k(examples, unit_list) < 1:
        warnings.warn(
            f"feature visualization of {layer}: the prototype view needs the layer's top-k examples "
            "(give examples, or run a TopKExamples first); skipped",
            stacklevel=2,
        )
        views.remove("prototype")
    peaks = unit_peaks(examples, unit_list) if kind == "peak" else None
    if kind == "peak" and peaks is None:
        warnings.warn(
            f"feature visualization of {layer}: kind='peak' needs the layer's top-k examples with positions "
            "(a conv layer mined with spatial='max'); optimizing the centre position (kind='unit') instead",
            stacklevel=2,
        )
        kind = "unit"
    l1_weights = None
    if l1_relative and l1_weight:
        kth = kth_best(examples, unit_list)
        if kth is None:
            warnings.warn(
                f"feature visualization of {layer}: l1_relative needs the layer's top-k examples; "
                f"l1_weight {l1_weight} is used as it is",
                stacklevel=2,
            )
        else:
            l1_weights = float(l1_weight) * kth.clamp(min=0)
    for index, view in enumerate(views):
        regularizer = None
        if view == "plain":
            regularizer = image_regularizer(tv_weight, 0.0 if l1_weights is not None else l1_weight)
        rendering = render_view(
            model,
            layer,
            unit_list,
            view,
            image_shape=image_shape,
            max_batch=max_batch,
            seed=seed,
            prior=prior,
            magnitude=magnitude,
            prior_max_norm=prior_max_norm,
            starts=starts,
            regularizer=regularizer,
            progress=progress,
            kind=kind,
            peaks=peaks,
            l1_weights=l1_weights if view == "plain" else None,
            plain_param=plain_param,
            examples=examples,
            steps=steps,
            lr=lr,
            transforms=None if view == "prior" else transforms,
        )
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
        saved[view] = rendering.image.clone()
        saved[f"activation_{view}"] = activations.clone()
        if view in result.ratios:
            saved[f"ratio_{view}"] = result.ratios[view].clone()
    reporter.save(f"featvis/{layer}/featvis.pt", saved)
    reporter.text(f"featvis/{layer}/table", unit_table(result, examples), step)
    try:  # a layer that reads the input directly: its weights are an exact, free picture of each unit
        weights = weight_template(model, layer, unit_list)
    except ValueError:
        weights = None
    if weights is not None:
        reporter.save(f"templates/{layer}/templates.pt", {"units": torch.tensor(unit_list), "weights": weights})
    return result
