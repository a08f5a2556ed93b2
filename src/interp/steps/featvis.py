"""Feature visualization: the input optimized for each unit (activation maximization), in one or
more views. A view is a parameterization of the image, not another algorithm:

* ``plain``: the default parameterization of :func:`interp.optvis.render` (Fourier basis,
  colour decorrelation), with the configured TV/L1 penalties: what maximizes the unit;
* ``prior``: the latent space of a generator learned on the data (:mod:`interp.optvis.latent`),
  inside a trust region: what *data-like* input maximizes the unit. Given the layer's top-k
  examples and a prior that can encode (``ImagePrior``), each unit starts from the mean code of its
  top examples and stays near it: a digit like the ones the unit prefers, pushed further. A prior
  can bias the picture toward the data; the plain view stays beside it;
* ``maco``: only the Fourier phase is optimized, the magnitude is the data's (Fel et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.optvis import Capture, Rendering, frozen, model_device, render_units
from interp.optvis.latent import LatentParam, mean_codes
from interp.optvis.maco import MacoParam
from interp.optvis.memory import PROBE_UNITS, MemoryMeter, fitting_batch, memory_meter
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

VIEWS = ("plain", "prior", "maco")
VIEW_NOTES = {
    "plain": "The input that maximizes the unit (plain view)",
    "prior": "The data-like input that maximizes the unit (in the latent space of a prior learned on the data)",
    "maco": "The input that maximizes the unit with the data's Fourier magnitude (MaCo)",
}


@dataclass
class Views:
    """What :func:`feature_visualization` returns: per view, the rendering of every unit (row
    ``i`` is ``units[i]``) and the activation it reaches; ``ratios`` holds, per view, the
    activation over the unit's dataset maximum with the same reduction over positions (when the
    layer's top-k examples were given)."""

    units: list[int]
    renderings: dict[str, Rendering]
    activations: dict[str, torch.Tensor]
    ratios: dict[str, torch.Tensor] = field(default_factory=dict)

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


def unit_table(result: Views, examples: Examples | None) -> str:
    """A markdown table, one row per unit: each view's activation and ratio to the dataset
    maximum, and the majority label of the unit's top examples (for TensorBoard's TEXT tab)."""
    views = list(result.renderings)
    labels = examples.labels() if examples is not None else None
    head = ["unit", *(f"{v} activation" for v in views), *(f"{v} / dataset max" for v in views if v in result.ratios)]
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


def view_param(
    view: str,
    shape: tuple[int, ...],
    units: Sequence[int],
    seed: int,
    prior: nn.Module | None = None,
    magnitude: torch.Tensor | None = None,
    prior_max_norm: float | None = None,
    starts: torch.Tensor | None = None,
) -> nn.Module | None:
    """The parameterization of ``view`` for one image of ``shape`` (C, H, W) per unit, each row
    seeded from (``seed``, unit); None: ``render_units``' default (seeded the same way). ``prior``
    is an ``ImagePrior`` or its decoder; ``starts`` ([len(units), latent_dim]) start the prior
    view's codes (:func:`prior_starts`)."""
    seeds = unit_seeds(seed, units)
    if view == "plain":
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
    ``starts`` (row i for ``units[i]``) start the prior view."""
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
        rows_starts = None if starts is None else starts[[row_of[u] for u in rows]]
        param = view_param(view, image_shape, rows, seed, prior, magnitude, prior_max_norm, rows_starts)
        rendering = render_units(
            model,
            layer,
            rows,
            seed=seed,
            shape=image_shape,
            param=param,
            regularizer=regularizer,
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
    top-k ``examples``, ``.../ratio_to_dataset_max`` (the same reduction over positions on both
    sides). Saves ``interp/featvis/<layer>/featvis.pt`` (``units``; per view the images and
    ``activation_<view>``). The prior view (``prior``: an ``ImagePrior`` or a decoder) starts from
    each unit's top ``examples`` when it can (:func:`prior_starts`) and runs without
    ``transforms``: the generator already keeps its images natural. Under torch.distributed each
    rank renders its share of the units (in chunks, see :func:`render_view`) and every rank ends
    with all of them; only rank zero writes."""
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
    result = Views(unit_list, {}, {})
    saved: dict[str, torch.Tensor] = {"units": torch.tensor(unit_list)}
    if examples is not None and not examples.covers(unit_list):  # reuse what exists, mine the rest
        examples = examples.extended(model, layer, unit_list)
    starts = prior_starts(prior, examples, unit_list) if "prior" in views else None
    for index, view in enumerate(views):
        regularizer = image_regularizer(tv_weight, l1_weight) if view == "plain" else None
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
            steps=steps,
            lr=lr,
            transforms=None if view == "prior" else transforms,
        )
        activations = rendering.activations if rendering.activations is not None else rendering.scores
        result.renderings[view], result.activations[view] = rendering, activations
        if examples is not None and examples.covers(unit_list):
            same_stat = like_for_like(model, layer, unit_list, rendering.image, examples.spatial)
            best = torch.stack([examples.top.values[examples.row(u), 0] for u in unit_list]).float()
            result.ratios[view] = same_stat / best.where(best != 0, torch.full_like(best, float("nan")))
        prefix = f"featvis/{layer}" if index == 0 else f"featvis/{layer}/{view}"
        for row, unit in enumerate(unit_list):
            ratio = result.ratios.get(view)
            shown = f" ({float(ratio[row]):.2f}x the unit's best example)" if ratio is not None else ""
            reporter.image(
                f"{prefix}/unit_{unit:03d}",
                upscale(rendering.image[row], 112),
                step,
                description=f"{VIEW_NOTES[view]} for {layer} unit {unit}: activation "
                f"{float(activations[row]):.4g}{shown}.",
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
