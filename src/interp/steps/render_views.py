"""Rendering the views of feature visualization: the parameterization of each view, the starts of
the prior view, the prototype view, and :func:`render_view`, which splits the units across processes
and chunks and pads every batch so that a unit's result never depends on the split.
(:mod:`interp.steps.featvis` runs the views and reports them.)"""

from __future__ import annotations

from collections.abc import Sequence
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
from interp.steps.common import gather_shares, my_share
from interp.steps.topk import Examples

#: The views (see :mod:`interp.steps.featvis`).
VIEWS = ("plain", "prior", "maco", "prototype")
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
    (:data:`PLAIN_PARAMS`).

    Args:
        view: one of :data:`VIEWS` but ``prototype`` (which :func:`render_prototypes` renders).
        shape: (C, H, W) of the images.
        units: the units, one row each.
        seed: the seed the rows' seeds derive from.
        prior: the prior view's ``ImagePrior`` or decoder.
        magnitude: the MaCo view's Fourier magnitude (None: its default).
        prior_max_norm: the prior view's trust radius around the origin.
        starts: the prior view's starting codes.
        plain_param: the plain view's parameterization.

    Returns:
        The parameterization module, or None for the default one.

    Raises:
        InterpError: an unknown view or ``plain_param``, or the prior view without ``prior``.
    """
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
    ``prototype`` view reads each unit's top ``examples`` (:func:`render_prototypes`).

    Args:
        model: the network.
        layer: the units' layer.
        units: the units, row ``i`` for ``units[i]``.
        view: one of :data:`VIEWS`.
        image_shape: (C, H, W) of the images.
        max_batch: the most units in one chunk (None: probe on CUDA, one batch on the CPU).
        memory: a memory meter in place of the CUDA one.
        seed: seeds the rows (with each unit) and the transforms.
        prior: the prior view's ``ImagePrior`` or decoder.
        magnitude: the MaCo view's Fourier magnitude.
        prior_max_norm: the prior view's trust radius around the origin.
        starts: the prior view's starting codes, ``[U, latent_dim]``.
        regularizer: an objective added to each unit's (e.g. TV/L1 penalties), or None.
        progress: show a progress bar.
        kind: one of :data:`KINDS`.
        peaks: ``[U, 2]`` positions for ``kind="peak"``.
        l1_weights: ``[U]`` per-unit L1 weights, or None.
        plain_param: the plain view's parameterization (:data:`PLAIN_PARAMS`).
        examples: the layer's top-k examples (the prototype view needs them).
        render_kwargs: passed to :func:`~interp.optvis.render_units` (``steps``, ``lr``,
            ``transforms``, ...).

    Returns:
        The :class:`~interp.optvis.render.Rendering` of all ``units`` (on every rank), with their
        ``units`` and ``activations``.

    Raises:
        InterpError: an unknown ``kind``, view or ``plain_param``; ``kind="peak"`` without one
            peak per unit; the prototype view without top-k examples of every unit; the prior
            view without ``prior``.
        torch.OutOfMemoryError: a chunk of one unit does not fit, or there is no memory meter.
    """
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
