"""Top-k results and their exact merging, across shards of the data and processes.

:class:`TopK` is what :func:`~interp.optvis.topk.mine_topk` returns. Results mined on disjoint parts of the
data merge into the result of one pass over all of it (:func:`merge_topk`; :func:`all_gather_topk` across the
ranks of a ``torch.distributed`` group), in the same order: values best first, equal values by the lower
dataset index. :func:`shard_range` cuts the data into the ranks' contiguous shards.

Example::

    >>> start, stop = shard_range(10, rank=1, world_size=3)
    >>> start, stop
    (4, 7)
    >>> a = TopK(torch.tensor([[3.0, 1.0]]), torch.tensor([[0, 2]]), None, torch.tensor([0]), "fc")
    >>> b = TopK(torch.tensor([[3.0, 2.0]]), torch.tensor([[5, 6]]), None, torch.tensor([0]), "fc")
    >>> merged = merge_topk([a, b], k=3)
    >>> merged.values.tolist(), merged.indices.tolist()
    ([[3.0, 3.0, 2.0]], [[0, 5, 6]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["TopK", "all_gather_topk", "merge_topk", "shard_range"]


@dataclass
class TopK:
    """The top-k (or bottom-k) examples of each unit of one layer.

    Attributes:
        values: ``[U, k]`` activations, best first: descending for ``largest=True``, ascending
            (most negative first) for the bottom-k. Equal values keep the lower index first.
        indices: ``[U, k]`` int64 dataset indices of the examples.
        positions: ``[U, k, 2]`` int64 ``(y, x)`` of the spatial maximum for conv layers mined
            with ``spatial="max"``; ``None`` otherwise.
        units: ``[U]`` int64 unit (channel) numbers, one per row.
        layer: the layer name.
        largest: ``True`` for the top-k, ``False`` for the bottom-k.
        requested_k: the ``k`` asked for. ``values`` has fewer columns when the data held fewer
            examples; :func:`merge_topk` uses it to know how many to keep.
    """

    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor | None
    units: torch.Tensor
    layer: str
    largest: bool = True
    requested_k: int | None = None

    @property
    def k(self) -> int:
        """Number of examples kept per unit (columns of ``values``)."""
        return self.values.shape[1]

    def to(self, device: torch.device | str) -> TopK:
        """The same result with its tensors on ``device``.

        Args:
            device: the target device.

        Returns:
            A new :class:`TopK`.
        """
        pos = None if self.positions is None else self.positions.to(device)
        return TopK(
            self.values.to(device),
            self.indices.to(device),
            pos,
            self.units.to(device),
            self.layer,
            self.largest,
            self.requested_k,
        )


def _sort_select(values, indices, positions, k: int, largest: bool):
    """The first ``k`` of each row in (value, then lower index) order, by two stable sorts."""
    by_index = indices.argsort(dim=1, stable=True)
    by_value = values.gather(1, by_index).argsort(dim=1, descending=largest, stable=True)
    order = by_index.gather(1, by_value)[:, :k]
    pos = None
    if positions is not None:
        where = order.view(order.shape + (1,) * (positions.ndim - 2)).expand(order.shape + positions.shape[2:])
        pos = positions.gather(1, where)
    return values.gather(1, order), indices.gather(1, order), pos


# --------------------------------------------------------------------------------------------
# Shards and processes


def merge_topk(results: Sequence[TopK], k: int | None = None) -> TopK:
    """One exact :class:`TopK` from results mined on disjoint parts of the data.

    Same order as one pass over all the data: best first, equal values by lower index.

    Args:
        results: the results, of one layer, direction and set of units, all with or all without positions.
        k: examples to keep per unit; ``None``: the ``requested_k`` of the results (or their widest ``k``).

    Returns:
        The merged result, on the device of the first result.

    Raises:
        ValueError: no results, or results of different layers, directions or units, or with and without
            positions.
    """
    results = list(results)
    if not results:
        raise ValueError("merge_topk needs at least one result")
    first = results[0]
    for r in results[1:]:
        if r.layer != first.layer or r.largest != first.largest:
            raise ValueError(
                f"cannot merge results of different layers or directions: "
                f"({first.layer!r}, largest={first.largest}) and ({r.layer!r}, largest={r.largest})"
            )
        if r.units.shape != first.units.shape or not torch.equal(r.units.cpu(), first.units.cpu()):
            raise ValueError("cannot merge results for different units")
        if (r.positions is None) != (first.positions is None):
            raise ValueError("cannot merge results with and without spatial positions")
    if k is None:
        k = max(r.requested_k or r.k for r in results)
    device = first.values.device
    values = torch.cat([r.values.to(device) for r in results], 1)
    indices = torch.cat([r.indices.to(device) for r in results], 1)
    positions = None
    if first.positions is not None:
        # checked above: every result has positions
        positions = torch.cat([r.positions.to(device) for r in results if r.positions is not None], 1)
    values, indices, positions = _sort_select(values, indices, positions, k, first.largest)
    return TopK(values, indices, positions, first.units, first.layer, first.largest, k)


def all_gather_topk(result: TopK, group=None) -> TopK:
    """Merge the results of all ranks of a ``torch.distributed`` group; every rank gets it.

    Each rank mines its own contiguous shard (see :func:`shard_range`) with
    ``index_offset=start``. Ranks whose shard held fewer than ``k`` examples are padded for
    the collective and the padding is dropped before the exact merge. Without an initialized
    process group (or with one process) the result is returned as is. The result has the
    devices of ``result``; with the NCCL backend the exchange runs on the current CUDA device.

    Args:
        result: this rank's result.
        group: the process group; ``None``: the default group.

    Returns:
        The merged result (the same on every rank).

    Raises:
        ValueError: ranks that mined different units or layer kinds.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return result
    world = dist.get_world_size(group)
    if world == 1:
        return result
    device = result.values.device
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())

    n_units, width = result.values.shape
    meta = torch.tensor(
        [n_units, width, result.requested_k or width, result.positions is not None], dtype=torch.int64, device=device
    )
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta, group=group)
    meta_lists: list[list[int]] = [m.tolist() for m in metas]
    if any(m[0] != n_units or m[3] != meta[3].item() for m in meta_lists):
        raise ValueError(f"all_gather_topk: ranks mined different numbers of units or layer kinds: {meta_lists}")
    common = max(m[1] for m in meta_lists)
    requested = max(m[2] for m in meta_lists)

    def gather(t: torch.Tensor, fill=None) -> list[torch.Tensor]:
        t = t.to(device)
        if fill is not None and t.shape[1] < common:
            pad_shape = (t.shape[0], common - t.shape[1]) + tuple(t.shape[2:])
            t = torch.cat([t, torch.full(pad_shape, fill, dtype=t.dtype, device=device)], 1)
        out = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(out, t.contiguous(), group=group)
        return out

    units = gather(result.units)
    if any(not torch.equal(u, units[0]) for u in units):
        raise ValueError("all_gather_topk: ranks mined different units")
    values = gather(result.values, float("-inf") if result.largest else float("inf"))
    indices = gather(result.indices, -1)
    positions = None if result.positions is None else gather(result.positions, -1)

    home = result.values.device
    parts = []
    for rank, m in enumerate(meta_lists):
        w = m[1]  # drop the padding
        pos = None if positions is None else positions[rank][:, :w].to(home)
        parts.append(
            TopK(
                values[rank][:, :w].to(home),
                indices[rank][:, :w].to(home),
                pos,
                result.units,
                result.layer,
                result.largest,
                requested,
            )
        )
    return merge_topk(parts, k=requested)


def shard_range(n: int, rank: int, world_size: int, align: int = 1) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous shard of ``n`` examples.

    Shards are as even as possible, in rank order, and cover ``range(n)`` exactly once. With
    ``align`` > 1 every boundary except the final ``n`` is a multiple of ``align`` (give the
    batch size: each rank's batches are then the very batches of a single-process pass).

    Args:
        n: number of examples.
        rank: this rank, ``0 <= rank < world_size``.
        world_size: number of ranks.
        align: the boundaries' multiple.

    Returns:
        ``(start, stop)``, stop exclusive.

    Raises:
        ValueError: a rank outside ``[0, world_size)``, ``n < 0`` or ``align < 1``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    if n < 0 or align < 1:
        raise ValueError(f"need n >= 0 and align >= 1, got n={n}, align={align}")
    blocks = -(-n // align)
    base, extra = divmod(blocks, world_size)
    start = rank * base + min(rank, extra)
    stop = start + base + (1 if rank < extra else 0)
    return min(start * align, n), min(stop * align, n)
