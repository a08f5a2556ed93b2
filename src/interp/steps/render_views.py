"""Rendering the views of feature visualization: the parameterization of each view, the starts of
the prior view, the prototype view, and :func:`render_view`, which splits the units across processes
and chunks and pads every batch so that a unit's result never depends on the split.
(:mod:`interp.steps.featvis` runs the views and reports them.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from interp.report import inputs_at
from interp.steps.common import gather_shares, model_example, my_share
from interp.steps.featvis_settings import KINDS, PLAIN_PARAMS, VIEWS, FeatVisSettings, ViewInputs
from interp.steps.topk import Examples

__all__ = [
    "KINDS",
    "PLAIN_PARAMS",
    "ROW_MULTIPLE",
    "VIEWS",
    "ViewRun",
    "examples_k",
    "image_shape_of",
    "kth_best",
    "prior_starts",
    "render_prototypes",
    "render_view",
    "row_l1",
    "unit_peaks",
    "view_param",
]

#: The prototype view's accentuation (benchmarks/conv_legibility.py): Adam steps, learning rate,
#: weight of the distance to the prototype at the model's first layer, 1/f power of the offset.
PROTOTYPE_STEPS, PROTOTYPE_LR, PROTOTYPE_REG_WEIGHT, PROTOTYPE_DECAY = 128, 0.02, 30.0, 1.5


@dataclass
class ViewRun:
    """What one view's run reads besides its settings and the :class:`ViewInputs`: tensors with one
    row per unit (row ``i`` for ``units[i]``) and the memory meter that sizes the chunks.

    Attributes:
        starts: the prior view's starting codes, ``[U, latent_dim]`` (:func:`prior_starts`).
        peaks: ``[U, 2]`` positions for ``kind="peak"`` (:func:`unit_peaks`).
        l1_weights: ``[U]`` per-unit L1 weights added to ``regularizer``, or None.
        regularizer: an objective added to each unit's (e.g. TV/L1 penalties), or None.
        memory: a memory meter in place of the CUDA one
            (any :class:`~interp.optvis.memory.MemoryMeter`).
        optimizer: ``params -> torch.optim.Optimizer`` in place of Adam(``lr``) (a benchmark's timing
            hook), or None.
    """

    starts: torch.Tensor | None = None
    peaks: torch.Tensor | None = None
    l1_weights: torch.Tensor | None = None
    regularizer: obj.Objective | None = None
    memory: MemoryMeter | None = None
    optimizer: Callable | None = None


def prior_starts(prior: nn.Module | None, examples: Examples | None, units: list[int]) -> torch.Tensor | None:
    """Where the prior view starts for each unit: the mean latent code of its top examples
    ([U, latent_dim], row i for ``units[i]``), when the prior can encode (``ImagePrior.encode``)
    and ``examples`` cover the units; else None (random starts).

    Args:
        prior: an ``ImagePrior`` (or a decoder, which cannot encode), or None.
        examples: the layer's top-k examples, or None.
        units: the units rendered.

    Returns:
        ``[U, latent_dim]`` codes on the CPU, or None.
    """
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
    """How many top examples every unit of ``units`` has (0 without examples covering them).

    Args:
        examples: the layer's top-k examples, or None.
        units: the units rendered.

    Returns:
        The smallest number of valid examples of any unit of ``units``.
    """
    if examples is None or not examples.covers(units):
        return 0
    return min(int((examples.top.indices[examples.row(u)] >= 0).sum()) for u in units)


def unit_peaks(examples: Examples | None, units: list[int]) -> torch.Tensor | None:
    """Each unit's peak ([U, 2] (y, x), row i for ``units[i]``): the modal position of its top-k
    examples' spatial maxima (:func:`~interp.optvis.neuron.peak_positions`); None without examples
    with positions (a dense layer, or a top-k reduced by the mean).

    Args:
        examples: the layer's top-k examples, or None.
        units: the units rendered.

    Returns:
        ``[U, 2]`` long tensor, or None.
    """
    k = examples_k(examples, units)
    if examples is None or k < 1 or examples.top.positions is None:
        return None
    positions = examples.top.positions[[examples.row(u) for u in units], :k]
    return peak_positions(positions)


def kth_best(examples: Examples | None, units: list[int]) -> torch.Tensor | None:
    """Each unit's k-th best dataset activation ([U], the last of its top-k), or None.

    Args:
        examples: the layer's top-k examples, or None.
        units: the units rendered.

    Returns:
        ``[U]`` floats (``k`` as in :func:`examples_k`), or None without examples covering ``units``.
    """
    k = examples_k(examples, units)
    if examples is None or k < 1:
        return None
    return torch.stack([examples.top.values[examples.row(u), k - 1] for u in units]).float()


def view_param(
    view: str,
    shape: tuple[int, ...],
    units: list[int],
    settings: FeatVisSettings,
    inputs: ViewInputs | None = None,
    starts: torch.Tensor | None = None,
) -> nn.Module | None:
    """The parameterization of ``view`` for one image of ``shape`` (C, H, W) per unit, each row
    seeded from (``settings.seed``, unit); None: ``render_units``' default (seeded the same way).
    ``inputs.prior`` is an ``ImagePrior`` or its decoder; ``starts`` ([len(units), latent_dim]) start
    the prior view's codes (:func:`prior_starts`); ``settings.plain_param`` picks the plain view's
    (:data:`PLAIN_PARAMS`).

    Args:
        view: one of :data:`VIEWS` but ``prototype`` (which :func:`render_prototypes` renders).
        shape: (C, H, W) of the images.
        units: the units, one row each.
        settings: the seed, the prior view's ``prior_max_norm``, the plain view's ``plain_param``.
        inputs: the prior view's ``prior``, the MaCo view's ``magnitude`` (None: its default).
        starts: the prior view's starting codes.

    Returns:
        The parameterization module, or None for the default one.

    Raises:
        InterpError: an unknown view, or the prior view without ``prior``.
    """
    inputs = inputs if inputs is not None else ViewInputs()
    seeds = unit_seeds(settings.seed, units)
    if view == "plain":
        return dark_image((len(units), *shape), seed=seeds) if settings.plain_param == "dark" else None
    if view == "prior":
        if inputs.prior is None:
            raise InterpError(
                "the prior view needs a learned prior (a decoder); train one with interp.models.train_prior(data)"
            )
        decoder = getattr(inputs.prior, "decoder", inputs.prior)
        return LatentParam(decoder, batch=len(units), seed=seeds, max_norm=settings.prior_max_norm, start=starts)
    if view == "maco":
        return MacoParam((len(units), *shape), magnitude=inputs.magnitude, seed=seeds)
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
    """``-weights[i] * L1`` for batch row ``i`` (an L1 penalty with one weight per unit).

    Args:
        weights: ``[B]``, one weight per batch row.

    Returns:
        An :class:`~interp.optvis.objectives.Objective` on the input.
    """
    penalty = obj.l1()

    def fn(acts: obj.Acts) -> torch.Tensor:
        values = penalty(acts)
        return -weights.to(values.device, values.dtype) * values

    return obj.Objective(fn, [obj.INPUT], "-w * l1")


def _render_rows(
    model: nn.Module,
    layer: str,
    rows: list[int],
    settings: FeatVisSettings,
    shape: tuple[int, ...],
    param: nn.Module | None,
    run: ViewRun,
    progress: bool,
) -> Rendering:
    """``render_units`` for ``kind`` ``channel``/``unit``; for ``peak`` the same with
    :func:`~interp.optvis.neuron.neuron` at ``run.peaks`` (row i: ``rows[i]`` at ``peaks[i]``); the
    objective plus ``run.regularizer``."""
    regularizer = run.regularizer
    common: dict[str, Any] = dict(
        seed=settings.seed, progress=progress, steps=settings.steps, lr=settings.lr, optimizer=run.optimizer
    )
    if settings.kind != "peak":
        return render_units(
            model,
            layer,
            rows,
            kind=settings.kind,
            regularizer=regularizer,
            shape=shape,
            param=param,
            transforms=settings.transforms,
            **common,
        )
    assert run.peaks is not None
    goal = neuron(layer, rows, run.peaks)
    if param is None:
        param = image_param((len(rows), *shape), seed=unit_seeds(settings.seed, rows))
    objective = goal if regularizer is None else goal + regularizer
    result = render(model, objective, param=param, transforms=settings.transforms, **common)
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
    accentuated for the unit's channel objective. ``activations`` are the objective's values.

    Args:
        model: the network.
        layer: the units' layer.
        rows: the unit of each row (a unit may repeat).
        examples: the layer's top-k examples, covering ``rows``.
        k: how many of each unit's best examples to use.
        seed: seeds the accentuation.
        progress: show a progress bar.

    Returns:
        The :class:`~interp.optvis.render.Rendering`, row ``i`` for ``rows[i]``.
    """
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


def image_shape_of(model: nn.Module, settings: FeatVisSettings) -> tuple[int, ...] | None:
    """(C, H, W) of the images: ``settings.shape``, else that of the model's ``example_input_array``.

    Args:
        model: the network.
        settings: the feature visualization's settings.

    Returns:
        The shape, or None when neither gives one.
    """
    if settings.shape is not None:
        return tuple(settings.shape)
    example = model_example(model)
    return None if example is None else tuple(example.shape[1:])


def render_view(
    model: nn.Module,
    layer: str,
    units: list[int],
    view: str,
    settings: FeatVisSettings | None = None,
    inputs: ViewInputs | None = None,
    run: ViewRun | None = None,
    progress: bool = False,
) -> Rendering:
    """Render ``units`` in one view, split across torch.distributed ranks (each renders its share)
    and in chunks (bounded memory). Every row is seeded from (``settings.seed``, unit) and the
    transforms from the seed, so on the CPU the images are the same bits as one batch in one process.

    Chunks: at most ``settings.max_batch`` units. ``max_batch=None`` on a CUDA model probes: the
    first chunk has :data:`~interp.optvis.memory.PROBE_UNITS` units, its peak memory sizes the others
    to 80% of the free memory (:func:`~interp.optvis.memory.fitting_batch`), and a chunk that still
    runs out of memory is retried at half the size. On the CPU ``None`` renders the share in one
    batch. ``run.memory`` replaces the CUDA meter. ``run.starts`` (row i for ``units[i]``) start the
    prior view; ``run.peaks`` ([U, 2]) are the positions of ``kind="peak"``; ``run.l1_weights``
    ([U]) an L1 penalty per unit added to ``run.regularizer``; the ``prototype`` view reads each
    unit's top ``inputs.examples`` (:func:`render_prototypes`). The settings are used as they are
    (the prior view's ``transforms`` too): :func:`~interp.steps.featvis.feature_visualization`
    gives each view its own.

    Args:
        model: the network.
        layer: the units' layer.
        units: the units, row ``i`` for ``units[i]``.
        view: one of :data:`VIEWS`.
        settings: steps, lr, seed, transforms, kind, shape (None: the model's
            ``example_input_array``), plain_param, prior_max_norm and max_batch (None: the defaults).
        inputs: the prior, the MaCo magnitude and the top-k examples the view reads.
        run: the per-unit tensors of this view and the memory meter.
        progress: show a progress bar.

    Returns:
        The :class:`~interp.optvis.render.Rendering` of all ``units`` (on every rank), with their
        ``units`` and ``activations``.

    Raises:
        InterpError: an unknown view; no input shape; ``kind="peak"`` without one peak per unit; the
            prototype view without top-k examples of every unit; the prior view without a prior.
        torch.OutOfMemoryError: a chunk of one unit does not fit, or there is no memory meter.
    """
    settings = settings if settings is not None else FeatVisSettings()
    inputs = inputs if inputs is not None else ViewInputs()
    run = run if run is not None else ViewRun()
    image_shape = image_shape_of(model, settings)
    if image_shape is None and view != "prototype":
        raise InterpError(f"rendering {layer} needs the input shape: set the model's example_input_array or shape")
    peaks, examples, max_batch = run.peaks, inputs.examples, settings.max_batch
    if settings.kind == "peak" and (peaks is None or len(peaks) != len(units)):
        raise InterpError("kind='peak' needs one peak position per unit (the layer's top-k with positions)")
    k = examples_k(examples, units) if view == "prototype" else 0
    if view == "prototype" and k < 1:
        raise InterpError("the prototype view needs the layer's top-k examples of every unit")
    share = my_share(units)
    meter = run.memory if run.memory is not None else (memory_meter(model) if max_batch is None else None)
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
            rendering = render_prototypes(model, layer, rows, examples, k, seed=settings.seed, progress=progress)
            return _first_rows(rendering, len(part_units)) if pad else rendering
        starts = None if run.starts is None else run.starts[index]
        assert image_shape is not None
        param = view_param(view, image_shape, rows, settings, inputs, starts)
        penalty = run.regularizer
        if run.l1_weights is not None:
            l1 = row_l1(run.l1_weights[index])
            penalty = l1 if penalty is None else penalty + l1
        rows_run = ViewRun(None, None if peaks is None else peaks[index], None, penalty, None, run.optimizer)
        rendering = _render_rows(model, layer, rows, settings, image_shape, param, rows_run, progress)
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
