"""Top-k dataset examples: the inputs of a data set that activate each unit most (and least)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.optvis.receptive import ReceptiveField, box_for, crop_field, receptive_field
from interp.optvis.topk import SPATIAL_REDUCTIONS, TopK, all_gather_topk, mine_topk, shard_range
from interp.records import TopKRecord, save_record
from interp.report import Reporter, draw_boxes, grid, inputs_at, titled_row
from interp.settings import Settings
from interp.steps.common import Units, distributed, example_input, resolve_units, sequential_loader
from interp.store import ResultStore

#: The most examples one unit's picture shows (an 8 x 8 grid). ``k`` is not capped: the saved
#: ``topk.pt``, the atlas and :class:`Examples` keep all ``k``; only the pictures logged (TensorBoard,
#: PNG files) show the best ``PICTURE_LIMIT``, so that a large ``k`` cannot make images of
#: thousands of pixels a side.
PICTURE_LIMIT = 64


class Examples(TopKRecord):
    """What :func:`topk_examples` and :func:`mine_examples` return: a :class:`~interp.records.TopKRecord`
    (what ``topk.pt`` holds, without the histograms) that keeps the mined top-k and the data set it
    indexes. The record's fields are those of ``top`` and ``bottom``; ``labels`` are read from the
    data set when first asked for.

    Args:
        top: the top-k of each unit.
        bottom: the bottom-k of each unit (same units, same order), or ``None``.
        dataset: the data set the indices point into.
        spatial: how conv positions were reduced (``max`` or ``mean``).
    """

    def __init__(self, top: TopK, bottom: TopK | None, dataset: Dataset, spatial: str = "max") -> None:
        super().__init__(top.units.tolist(), top.values, top.indices, top.positions)
        del self.labels  # read from the data set when asked for (below)
        self.top, self.bottom, self.dataset, self.spatial = top, bottom, dataset, spatial
        if bottom is not None:
            self.bottom_values, self.bottom_indices = bottom.values, bottom.indices

    @cached_property
    def labels(self) -> torch.Tensor | None:  # type: ignore[override]
        """``[U, k]`` the labels of the top examples (-1 where missing), or ``None`` when the data has none."""
        return _labels(self.dataset, self.top.indices)

    def extended(self, model: nn.Module, layer: str, units: list[int]) -> Examples:
        """These examples for every unit of ``units``.

        The units this result lacks are mined on the same data set with the same ``k`` and position reduction, and
        joined to the rows it has (a reuse never loses a unit, whichever callback ran first).

        Args:
            model: the network the examples were mined with.
            layer: the layer name.
            units: the units needed.

        Returns:
            ``self`` when it covers ``units``, else a new result with the missing units' rows after the others.
        """
        have = set(self.top.units.tolist())
        missing = [u for u in dict.fromkeys(units) if u not in have]
        if not missing:
            return self
        k = self.top.k
        top = mine(model, layer, missing, k, self.dataset, spatial=self.spatial)
        bottom = None
        if self.bottom is not None:
            bottom = mine(model, layer, missing, self.bottom.k, self.dataset, largest=False, spatial=self.spatial)
        joined = _joined(self.top, top)
        assert joined is not None
        return Examples(joined, _joined(self.bottom, bottom), self.dataset, self.spatial)

    def bottom_row(self, unit: int) -> int:
        """The row of ``unit`` in the bottom-k.

        Args:
            unit: a unit of the bottom-k.

        Returns:
            The row index.
        """
        assert self.bottom is not None
        return {u: r for r, u in enumerate(self.bottom.units.tolist())}[unit]

    def covers(self, units: list[int], k: int = 1) -> bool:
        """Whether this result holds at least ``k`` examples for each of ``units``.

        ``k`` is capped at the data set's size.

        Args:
            units: the units needed.
            k: examples needed per unit.

        Returns:
            ``True`` when nothing needs mining.
        """
        return set(units) <= set(self.top.units.tolist()) and self.top.k >= min(k, len(self.dataset))  # type: ignore[arg-type]

    def row(self, unit: int) -> int:
        """The row of ``unit`` in the top-k.

        Args:
            unit: a unit of the top-k.

        Returns:
            The row index.
        """
        return self._rows[unit]

    @cached_property
    def _rows(self) -> dict[int, int]:
        return {unit: row for row, unit in enumerate(self.top.units.tolist())}


def _joined(a: TopK | None, b: TopK | None) -> TopK | None:
    """The rows of ``a`` then those of ``b`` (top-k of other units of one layer, same k)."""
    if a is None or b is None:
        return a if b is None else b
    k = min(a.k, b.k)
    positions = None
    if a.positions is not None and b.positions is not None:
        positions = torch.cat([a.positions[:, :k], b.positions[:, :k]])
    return TopK(
        torch.cat([a.values[:, :k], b.values[:, :k]]),
        torch.cat([a.indices[:, :k], b.indices[:, :k]]),
        positions,
        torch.cat([a.units, b.units]),
        a.layer,
        a.largest,
        a.requested_k,
    )


@dataclass(frozen=True)
class TopKSettings(Settings):
    """What decides a top-k: examples per unit, reduction over conv positions, whether the bottom-k is kept too, and
    the inference batch size.

    Attributes:
        k: examples per unit (a whole number >= 1). A ``k`` larger than the data set keeps every example, with one
            warning when the examples are mined. Each unit's picture shows the best :data:`PICTURE_LIMIT` (64) at
            most; the result, ``topk.pt`` and the atlas keep all ``k``.
        spatial: ``max`` or ``mean`` over the positions of a conv channel.
        bottom: keep the most negative examples too (``topk/<layer>/bottom/unit_XXX``; the atlas shows them).
        batch_size: inference batch size of the mining (does not change the result).
    """

    k: int = 16
    spatial: str = "max"
    bottom: bool = False
    batch_size: int = 1024

    def check(self) -> None:
        """Refuse ``k`` or ``batch_size`` below 1 and an unknown ``spatial``.

        Raises:
            SettingsError: a value that cannot work.
        """
        self.at_least("k", 1)
        self.at_least("batch_size", 1)
        self.one_of("spatial", SPATIAL_REDUCTIONS)


def mine(
    model: nn.Module,
    layer: str,
    units: list[int],
    k: int,
    dataset: Dataset,
    batch_size: int = 1024,
    largest: bool = True,
    spatial: str = "max",
) -> TopK:
    """Mine ``dataset`` for ``units``: :func:`mine_with` given plain arguments.

    Args:
        model: the network.
        layer: the layer name.
        units: the units to mine.
        k: examples per unit.
        dataset: the data to mine (map-style, fixed order).
        batch_size: inference batch size (and the shards' alignment).
        largest: the top-k (``False``: the bottom-k).
        spatial: how conv positions are reduced (``max`` or ``mean``).

    Returns:
        The merged :class:`~interp.optvis.topk.TopK`.
    """
    settings = TopKSettings(k=k, spatial=spatial, batch_size=batch_size)
    return mine_with(model, layer, units, dataset, settings, largest=largest)


def mine_with(
    model: nn.Module,
    layer: str,
    units: list[int],
    dataset: Dataset,
    settings: TopKSettings,
    *,
    largest: bool = True,
    progress: bool = False,
) -> TopK:
    """Mine ``dataset`` for ``units``; under torch.distributed each rank mines its shard.

    The results of the ranks are merged exactly (every rank gets the global top-k).

    Args:
        model: the network.
        layer: the layer name.
        units: the units to mine.
        dataset: the data to mine (map-style, fixed order).
        settings: ``k``, ``spatial`` and ``batch_size`` (also the shards' alignment); ``bottom`` is not read.
        largest: the top-k (``False``: the bottom-k).
        progress: show a progress bar (outside of torch.distributed).

    Returns:
        The merged :class:`~interp.optvis.topk.TopK`.
    """
    k, spatial, batch_size = settings.k, settings.spatial, settings.batch_size
    rank, world = distributed()
    n = len(dataset)  # type: ignore[arg-type]
    if world == 1:
        return mine_topk(
            model,
            layer,
            sequential_loader(dataset, batch_size),
            k=k,
            units=units,
            spatial=spatial,
            largest=largest,
            progress=progress,
        )
    start, stop = shard_range(n, rank, world, align=batch_size)
    if start == stop:
        # More ranks than batches: this rank has nothing to mine, but it must still take part in
        # the gather. Mine one example for the shapes and send an empty result.
        probe = mine_topk(
            model, layer, sequential_loader(dataset, 1, 0, 1), k=1, units=units, spatial=spatial, largest=largest
        )
        positions = None if probe.positions is None else probe.positions[:, :0]
        part = TopK(probe.values[:, :0], probe.indices[:, :0], positions, probe.units, layer, largest, k)
    else:
        part = mine_topk(
            model,
            layer,
            sequential_loader(dataset, batch_size, start, stop),
            k=k,
            units=units,
            spatial=spatial,
            largest=largest,
            index_offset=start,
        )
    return all_gather_topk(part)


def _labels(dataset: Dataset, indices: torch.Tensor) -> torch.Tensor | None:
    """The labels at ``indices`` ([U, k], -1 where an index is -1), or None when the data has none:
    the data set's own ``targets`` when it declares them (an image folder's class subfolders; none
    for a flat folder, whose items carry their index), else the second element of each item."""
    from interp.data.images import label_reader

    read = label_reader(dataset)
    if read is not None:
        found = [read(i) if i >= 0 else -1 for i in indices.flatten().tolist()]
        if all(v is None or v == -1 for v in found):
            return None
        flat = [-1 if v is None else v for v in found]
        return torch.tensor(flat, dtype=torch.long).reshape(indices.shape)
    first = dataset[0]
    if not (isinstance(first, (tuple, list)) and len(first) > 1):
        return None
    try:
        flat = [int(dataset[i][1]) if i >= 0 else -1 for i in indices.flatten().tolist()]
    except (TypeError, ValueError):
        return None
    return torch.tensor(flat, dtype=torch.long).reshape(indices.shape)


def activation_histograms(
    model: nn.Module,
    layer: str,
    units: list[int],
    dataset: Dataset,
    spatial: str = "max",
    bins: int = 40,
    batch_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's activation over the whole data set, as histograms.

    Conv channels are reduced over positions as the top-k is.

    Args:
        model: the network.
        layer: the layer name.
        units: the units.
        dataset: the data set.
        spatial: ``max`` or ``mean`` over the positions of a conv channel.
        bins: number of bins, spread between each unit's minimum and maximum.
        batch_size: inference batch size.

    Returns:
        ``(counts [U, bins], edges [U, bins + 1])``.
    """
    from interp.optvis import Capture, frozen, model_device

    index = torch.tensor(units)
    values = []
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        for batch in sequential_loader(dataset, batch_size):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            acts = cap(x.to(model_device(model)))[layer][:, index.to(model_device(model))]
            if acts.dim() > 2:
                acts = acts.flatten(2).amax(2) if spatial == "max" else acts.flatten(2).mean(2)
            values.append(acts.float().cpu())
    table = torch.cat(values)  # [N, U]
    counts, edges = [], []
    for column in table.T:
        low, high = float(column.min()), float(column.max())
        high = high if high > low else low + 1.0
        counts.append(torch.histc(column, bins=bins, min=low, max=high))
        edges.append(torch.linspace(low, high, bins + 1))
    return torch.stack(counts), torch.stack(edges)


def cheap_receptive_field(model: nn.Module, layer: str, max_pixels: int = 64 * 64) -> ReceptiveField | None:
    """The receptive field of ``layer``, when it is cheap to find.

    From the module chain; measured from the gradient footprint only for inputs up to ``max_pixels`` (a measurement
    costs passes per output row and column).

    Args:
        model: the network (with an ``example_input_array`` for the measurement).
        layer: the layer name.
        max_pixels: the largest input (height times width) measured.

    Returns:
        The field, or ``None`` (the examples are then shown whole).
    """
    try:
        return receptive_field(model, layer, method="analytic")
    except ValueError:
        shape = getattr(model, "example_input_array", None)
        if shape is not None and shape.shape[-1] * shape.shape[-2] <= max_pixels:
            return receptive_field(model, layer, method="gradient")
        return None


def receptive_picture(images: torch.Tensor, positions: torch.Tensor, field: ReceptiveField) -> torch.Tensor:
    """Conv examples the Microscope way: each cropped to the receptive field of the position of its maximum.

    The crops are shown beside the full images with that box drawn.

    Args:
        images: the examples, [N, C, H, W].
        positions: the ``(y, x)`` of each example's maximum, [N, 2].
        field: the layer's receptive field.

    Returns:
        The picture, [3, H, W] in [0, 1].
    """
    boxes = [box_for(field, p.tolist(), images.shape[-2:]) for p in positions]
    crops = crop_field(images, field, [p.tolist() for p in positions])
    nrow = max(1, math.ceil(math.sqrt(len(images))))
    return titled_row(
        [grid(crops, nrow=nrow, min_size=72), grid(draw_boxes(images, boxes), nrow=nrow, min_size=72)],
        [f"field of the max ({field.size[0]}x{field.size[1]} px)", "where it lies"],
    )


def clip_k(k: int, size: int, what: str) -> int:
    """``k`` or, when the data set holds fewer examples, its size, with one warning (on rank zero).

    Args:
        k: the examples asked for.
        size: the data set's size.
        what: names the request in the warning.

    Returns:
        ``min(k, size)``.
    """
    if size < k:
        if distributed()[0] == 0:
            warnings.warn(
                f"{what}: k={k} is more than the {size} examples of the data set; keeping all {size}", stacklevel=3
            )
        return size
    return k


def topk_examples(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    layer: str,
    settings: TopKSettings | None = None,
    *,
    units: Units = None,
    step: int = 0,
    progress: bool = False,
) -> Examples:
    """Mine ``dataset`` and log, per unit, the grid of its ``k`` maximal-activation examples
    (``interp/topk/<layer>/unit_XXX``) and their best activation (``.../max_activation``); with
    ``bottom`` also the most negative ones (``topk/<layer>/bottom/unit_XXX``). Saves
    ``interp/topk/<layer>/topk.pt`` (``units``, ``values``, ``indices``, ``positions`` for conv
    layers, ``labels`` when the data has them, ``dataset_max``).

    ``k`` larger than the data set keeps every example (``k`` becomes the data set's size), with
    one warning. Each picture shows the best :data:`PICTURE_LIMIT` (64) examples at most; the
    saved file and the result keep all ``k``.

    Args:
        model: the network.
        dataset: the data to mine (map-style, fixed order).
        reporter: where pictures and ``topk.pt`` go.
        layer: the layer name.
        settings: the :class:`TopKSettings` (None: the defaults).
        units: the layer's units (None: all).
        step: the global step the pictures are logged at.
        progress: show a progress bar.

    Returns:
        The :class:`Examples` mined.
    """
    settings = settings or TopKSettings()
    unit_list = resolve_units(model, layer, units, example_input(dataset))
    examples = mine_examples(model, dataset, layer, unit_list, settings, progress)
    log_examples(model, examples, reporter, layer, unit_list, step, settings.k)
    return examples


def mine_examples(
    model: nn.Module,
    dataset: Dataset,
    layer: str,
    units: list[int],
    settings: TopKSettings,
    progress: bool = False,
) -> Examples:
    """The top-k (and with ``settings.bottom`` the bottom-k) examples of ``units`` of ``layer`` in ``dataset``;
    ``k`` is clipped to the data set's size with one warning.

    Args:
        model: the network.
        dataset: the data to mine (map-style, fixed order).
        layer: the layer name.
        units: the units to mine.
        settings: examples per unit, reduction, bottom-k, batch size.
        progress: show a progress bar.

    Returns:
        The :class:`Examples` (under torch.distributed every rank gets the global result).
    """
    k = clip_k(settings.k, len(dataset), f"top-k of {layer}")  # type: ignore[arg-type]
    clipped = settings.replace(k=k) if k >= 1 else settings  # an empty data set: mine_topk says so
    top = mine_with(model, layer, units, dataset, clipped, progress=progress)
    low = mine_with(model, layer, units, dataset, clipped, largest=False) if settings.bottom else None
    return Examples(top, low, dataset, settings.spatial)


def examples_for(
    store: ResultStore,
    key: tuple[nn.Module, int, str],
    dataset: Dataset,
    units: list[int],
    settings: TopKSettings,
    progress: bool = False,
) -> Examples:
    """Top-k examples of ``units`` from the run's store, computing only what is missing.

    The store holds at most one result per (model, step, layer, data set, reduction): when it holds
    one with at least ``k`` examples (and the bottom-k when asked for), its rows are reused and the
    units it lacks are mined and joined; otherwise everything is mined. The union is filed back, so
    the next step that needs examples of this layer finds them, whichever step ran first.

    Args:
        store: the run's :class:`~interp.store.ResultStore`.
        key: ``(model, step, layer)``.
        dataset: the data to mine.
        units: the units needed.
        settings: examples per unit, reduction, bottom-k, batch size.
        progress: show a progress bar while mining.

    Returns:
        :class:`Examples` covering ``units`` (and possibly more), with at least
        ``min(settings.k, len(dataset))`` examples each.
    """
    model, step, layer = key
    filed_as = (id(dataset), settings.spatial)
    found: Examples | None = store.get(model, step, layer, "topk", filed_as)
    want_k = min(settings.k, len(dataset))  # type: ignore[arg-type]
    usable = found is not None and found.top.k >= want_k and (found.bottom is not None or not settings.bottom)
    if found is not None and usable:
        examples = found.extended(model, layer, units)
    else:
        known = [] if found is None else found.top.units.tolist()
        wanted = list(dict.fromkeys([*known, *units]))
        k = max(settings.k, found.top.k if found is not None else 0)
        examples = mine_examples(model, dataset, layer, wanted, settings.replace(k=k), progress)
    if examples is not found:
        store.put(model, step, layer, "topk", filed_as, examples)
    return examples


def log_examples(
    model: nn.Module,
    examples: Examples,
    reporter: Reporter,
    layer: str,
    units: list[int],
    step: int,
    k: int | None = None,
) -> None:
    """Log the pictures of ``units`` and save ``topk.pt`` (see :func:`topk_examples`).

    Args:
        model: the network (for the receptive fields and the histograms).
        examples: the mined examples; ``units`` must be among their rows.
        reporter: where the pictures and ``topk.pt`` go.
        layer: the layer name.
        units: the units to log, in this order.
        step: the global step the pictures are logged at.
        k: the first ``k`` examples of each row; ``None``: all.
    """
    dataset, spatial = examples.dataset, examples.spatial
    rows = [examples.row(u) for u in units]
    top = _rows_of(examples.top, rows, k)
    low = None
    if examples.bottom is not None:
        low = _rows_of(examples.bottom, [examples.bottom_row(u) for u in units], k)
    field = cheap_receptive_field(model, layer) if top.positions is not None else None
    for prefix, result in ((f"topk/{layer}", top), (f"topk/{layer}/bottom", low)):
        if result is None:
            continue
        kept = int(result.indices.shape[1])
        for row, unit in enumerate(result.units.tolist()):
            tag = f"{prefix}/unit_{unit:03d}"
            images = inputs_at(dataset, [i for i in result.indices[row, :PICTURE_LIMIT].tolist() if i >= 0])
            picture = grid(images, min_size=0)
            if field is not None and result.positions is not None:
                picture = receptive_picture(images, result.positions[row, : len(images)], field)
            which = "largest" if result.largest else "most negative"
            where = " cropped to the receptive field of the maximum, beside the full images" if field else ""
            reporter.image(
                tag,
                picture,
                step,
                description=f"The {len(images)}{f' best of the {kept}' if kept > len(images) else ''} examples of "
                f"the data with the {which} activation of {layer} unit {unit}{where}; best activation "
                f"{float(result.values[row, 0]):.4g}.",
            )
        reporter.histogram(f"{prefix}/best_activation", result.values[:, 0], step)
    record = Examples(top, low, dataset, spatial)  # the rows logged: what topk.pt holds
    if reporter.enabled:  # the atlas draws these; only rank zero writes them
        record.hist, record.hist_edges = activation_histograms(model, layer, units, dataset, spatial)
    save_record(reporter, layer, record)


def _rows_of(t: TopK, rows: list[int], k: int | None = None) -> TopK:
    """The rows ``rows`` of ``t`` (in that order), their first ``k`` examples (None: all)."""
    index = torch.tensor(rows, dtype=torch.long)
    return TopK(
        t.values[index, :k],
        t.indices[index, :k],
        None if t.positions is None else t.positions[index, :k],
        t.units[index],
        t.layer,
        t.largest,
        t.requested_k if k is None else min(k, t.requested_k or k),
    )
