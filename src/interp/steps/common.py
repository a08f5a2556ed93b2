"""What the interpretation steps share: units checked against the layer, data in order, the
image regularizer of the digit visualizations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from interp.errors import InterpError
from interp.optvis import get_layer, layer_size, model_device
from interp.optvis import objectives as obj
from interp.report import inputs_at

Units = Sequence[int] | range | int | None
T = TypeVar("T")


def unit_tag(kind: str, layer: str, unit: int) -> str:
    """The tag of one unit's picture: ``<kind>/<layer>/unit_XXX``.

    The kind comes first, so that TensorBoard groups the images by kind (``panel``, ``topk``, ``featvis``, ...).

    Args:
        kind: the kind of picture.
        layer: the layer name.
        unit: the unit index (three digits at least).

    Returns:
        The tag.
    """
    return f"{kind}/{layer}/unit_{unit:03d}"


def check_layer(model: nn.Module, layer: str) -> None:
    """Check that ``model`` has a layer called ``layer``.

    Args:
        model: the network.
        layer: the layer name.

    Raises:
        InterpError: an unknown layer; the message lists the closest names.
    """
    try:
        get_layer(model, layer)
    except ValueError as exc:
        raise InterpError(str(exc)) from None


def example_input(dataset: Dataset, n: int = 1) -> torch.Tensor:
    """The first ``n`` inputs of ``dataset`` (items are inputs or (input, label, ...) tuples).

    Args:
        dataset: the data set.
        n: how many inputs (fewer when the data set is smaller).

    Returns:
        The inputs, stacked.

    Raises:
        InterpError: the data set is empty.
    """
    count = min(n, len(dataset))  # type: ignore[arg-type]
    if count < 1:
        raise InterpError("the data set to interpret is empty")
    return inputs_at(dataset, range(count))


def resolve_units(model: nn.Module, layer: str, units: Units, example: torch.Tensor) -> list[int]:
    """``units`` checked against the size of ``layer`` on ``example``.

    Args:
        model: the network.
        layer: the layer name.
        units: one unit, several, or ``None`` for all of them.
        example: an input batch (its first item is used).

    Returns:
        The unit indices.

    Raises:
        InterpError: an unknown layer, no units, or a unit out of range.
    """
    check_layer(model, layer)
    size = layer_size(model, layer, example[:1].to(model_device(model)))[0]
    if units is None:
        return list(range(size))
    wanted = [int(units)] if isinstance(units, int) else [int(u) for u in units]
    if not wanted:
        raise InterpError(f"no units given for {layer}")
    bad = [u for u in wanted if not 0 <= u < size]
    if bad:
        raise InterpError(f"unit {bad[0]} is out of range: {layer} has {size} units (0-{size - 1})")
    return wanted


def model_example(model: nn.Module) -> torch.Tensor | None:
    """The model's ``example_input_array``, when it has one.

    Args:
        model: the network.

    Returns:
        The example batch, or ``None``.
    """
    example = getattr(model, "example_input_array", None)
    return example if isinstance(example, torch.Tensor) else None


def sequential_loader(dataset: Dataset, batch_size: int, start: int = 0, stop: int | None = None) -> DataLoader:
    """Batches of ``dataset[start:stop]`` in order (sliced at once for a TensorImageDataset).

    Args:
        dataset: the data set.
        batch_size: the batch size.
        start: the first item.
        stop: the item after the last; ``None``: the end.

    Returns:
        A DataLoader that does not shuffle.
    """
    from interp.data.mnist import TensorImageDataset, collate_batch

    stop = len(dataset) if stop is None else stop  # type: ignore[arg-type]
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    part = Subset(dataset, range(start, stop)) if (start, stop) != (0, len(dataset)) else dataset  # type: ignore[arg-type]
    if isinstance(base, TensorImageDataset):
        return DataLoader(part, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    return DataLoader(part, batch_size=batch_size, shuffle=False)


def image_regularizer(tv_weight: float = 0.0, l1_weight: float = 0.0) -> obj.Objective | None:
    """``-tv_weight * TV - l1_weight * L1``: smoother, darker images.

    Args:
        tv_weight: weight of the total variation.
        l1_weight: weight of the mean absolute pixel value.

    Returns:
        The regularizer, or ``None`` when both weights are 0.
    """
    terms = []
    if tv_weight:
        terms.append(-float(tv_weight) * obj.total_variation())
    if l1_weight:
        terms.append(-float(l1_weight) * obj.l1())
    if not terms:
        return None
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def distributed() -> tuple[int, int]:
    """Rank and world size of torch.distributed.

    Returns:
        ``(rank, world size)``, or ``(0, 1)`` outside of it.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def my_share(items: Sequence[T]) -> list[T]:
    """This rank's contiguous share of ``items`` (all of them outside of torch.distributed).

    Args:
        items: the items to share out.

    Returns:
        This rank's items, in order.

    >>> my_share([1, 2, 3])
    [1, 2, 3]
    """
    from interp.optvis.topk import shard_range

    rank, world = distributed()
    start, stop = shard_range(len(items), rank, world)
    return list(items[start:stop])


def gather_shares(part: T) -> list[T]:
    """Every rank's ``part``, in rank order (``[part]`` outside of torch.distributed).

    Args:
        part: this rank's part (picklable).

    Returns:
        The parts of all ranks.
    """
    rank, world = distributed()
    if world == 1:
        return [part]
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, part)
    return parts
