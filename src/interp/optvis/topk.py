"""Top-k mining: the dataset examples that excite (or inhibit) each unit of a layer the most.

One pass over the data keeps, for every unit of the layer at once, the ``k`` largest activations
and the dataset indices of the examples that produced them. Memory is O(units x k): each batch is
merged into a running ``[units, k]`` buffer and then dropped; activations of the whole data set
are never stored.

Example::

    top = mine_topk(model, "dense_1", images, k=9)
    top.indices[32]        # the 9 images that drive dense_1 unit 32 the hardest, best first

Ordering is exact and deterministic: values descending (ascending for the bottom-k), and equal
values are ordered by the lower dataset index first, also across batches, shards and processes.

How a batch is merged (the fast path, float activations of at most 32 bits):

* Each activation becomes one ``int64`` key: the upper 32 bits are the float's bits mapped to an
  order-preserving integer, the lower 32 bits are ``2**32 - 1 - index``. Keys are unique, so
  ``torch.topk`` on keys gives the exact order with ties broken by the lower index, whatever the
  kernel does with equal values. The running buffer holds only keys (and spatial positions).
* Once every unit has ``k`` entries, an example can enter a unit's buffer only if its activation
  is strictly above the unit's current k-th value (an equal value loses the tie: its index is
  higher than every index already seen). Per batch, the rows are cut into groups of 16; one max
  per (group, unit), one comparison with the thresholds and one gather queue the few groups that
  may hold a candidate. Every few batches the queue is filtered against the thresholds (which
  have not moved since), encoded, and merged with one ``topk`` over ``[touched units, k +
  candidates]``; the queue holds at most a small multiple of ``units x k`` values plus one
  batch. Late in a pass almost nothing passes the thresholds, so mining costs little more than
  the forward pass.
* The first batch fills the buffer the same way, with the k-th largest group maximum of each
  unit as an inclusive threshold, so no batch is ever encoded or sorted whole.

Other activation dtypes (float64) take a simple exact path: concatenate and sort stably.

:class:`TopK` and the merging of results across shards and processes (:func:`merge_topk`,
:func:`all_gather_topk`, :func:`shard_range`) live in :mod:`interp.optvis.topk_merge`; they are importable from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import cast

import torch
from torch import nn

from interp.optvis.capture import Capture, model_device
from interp.optvis.inputs import check_image_range
from interp.optvis.progress import progress as progress_iter
from interp.optvis.topk_merge import TopK, _sort_select, all_gather_topk, merge_topk, shard_range

__all__ = ["TopK", "mine_topk", "merge_topk", "all_gather_topk", "shard_range"]

SPATIAL_REDUCTIONS = ("max", "mean")

_LOW = 1 << 32  # keys are order(value) * 2**32 + (2**32 - 1 - index)
_MAX_INDEX = _LOW - 2  # keeps every real key above the int64 minimum used as padding
_INT64_MIN = -(1 << 63)
_GROUP = 16  # rows per group in the threshold test of the fast merge
_START_GROUP = 8  # finer groups for the first batch, which gathers the k best groups of every unit
_MERGE_EVERY = 8  # merge once the queue holds this many times k values per unit (memory O(U x k))
_KEY_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Exact ordering helpers


def _encode(s: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Unique int64 keys whose order is (value descending, index ascending) for float32 ``s``."""
    bits = (s + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0: the two compare equal
    order = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # monotone map float -> signed int32
    return order.to(torch.int64) * _LOW + (_LOW - 1 - index)


def _decode_values(keys: torch.Tensor) -> torch.Tensor:
    order = (keys >> 32).to(torch.int32)
    bits = order ^ ((order >> 31) & 0x7FFFFFFF)  # the map is its own inverse
    return bits.view(torch.float32)


def _decode_indices(keys: torch.Tensor) -> torch.Tensor:
    return (_LOW - 1) - (keys & (_LOW - 1))


# --------------------------------------------------------------------------------------------
# Mining


def _batches(data, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]
        return
    for batch in data:
        if isinstance(batch, (tuple, list)):
            if not batch:
                raise TypeError("mine_topk got an empty tuple/list as a batch")
            batch = batch[0]
        if not isinstance(batch, torch.Tensor):
            raise TypeError(
                f"mine_topk: a batch must be a Tensor or a tuple/list whose first element is the "
                f"input Tensor, got {type(batch).__name__}"
            )
        yield batch


def _refuse_shuffled(data: object) -> None:
    """Top-k indices are positions in iteration order: a shuffled loader would make them
    meaningless, silently."""
    from torch.utils.data import DataLoader, RandomSampler

    if isinstance(data, DataLoader) and isinstance(data.sampler, RandomSampler):
        raise ValueError(
            "mine_topk needs data in a fixed order (its indices are positions in the data): "
            "use a DataLoader with shuffle=False"
        )


def _float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _prepare(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Move a batch to the model; uint8 images (0..255) become floats in [0, 1]."""
    x = x.to(device)
    if x.dtype == torch.uint8:
        x = x.to(dtype).div_(255)
    return x


def _as_units(units) -> torch.Tensor | None:
    if units is None:
        return None
    t = torch.as_tensor(units)
    if t.numel() == 0:
        raise ValueError("units is empty: pass None for every unit of the layer")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"units must be integers, got dtype {t.dtype}")
    return t.to(torch.int64).reshape(-1)


class _Running:
    """The running per-unit buffers of one mining pass."""

    def __init__(self, k: int, largest: bool):
        self.k = k
        self.largest = largest
        self.fast: bool | None = None  # key path (float32-compatible) or stable-sort path
        self.keys: torch.Tensor | None = None  # fast path: [U, r] int64 keys, best first
        self.values: torch.Tensor | None = None  # slow path: [U, r] values
        self.indices: torch.Tensor | None = None  # slow path: [U, r] indices
        self.pos: torch.Tensor | None = None  # [U, r] flat spatial positions (conv + max)
        self.thr: torch.Tensor | None = None  # fast path, full buffer: k-th value, sign applied
        self.dtype: torch.dtype | None = None
        self.width: int | None = None  # W of conv outputs, to split flat positions
        # gathered groups waiting for the merge: (unit [h], index of the group's first row [h],
        # values [h, size], positions [h, size] or None), one entry per batch
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self.pending_count = 0

    @property
    def filled(self) -> int:
        buf = self.keys if self.fast else self.values
        return 0 if buf is None else buf.shape[1]

    def add(self, a: torch.Tensor, pos: torch.Tensor | None, base: int) -> None:
        """Take one batch: ``a`` [B, U] activations, ``pos`` [B, U] flat positions or None."""
        if self.fast is None:
            self.fast = a.dtype in _KEY_DTYPES
            self.dtype = a.dtype
        if not self.fast:
            self._add_sorted(a, pos, base)
        elif self.keys is None and a.shape[0] >= self.k and self._start(a, pos, base):
            pass
        elif self.filled < self.k:
            self._add_dense(a, pos, base)
        else:
            assert self.keys is not None  # the buffer is full
            self._collect(a, pos, base, self.thr, inclusive=False)
            # The merge waits until a few batches have queued candidates: per batch only the
            # group maxima, one comparison and one gather run; the thresholds do not move
            # meanwhile, so filtering at the merge keeps exactly what filtering now would.
            if self.pending_count >= _MERGE_EVERY * self.k * self.keys.shape[0]:
                self._merge()

    def finish(self) -> None:
        self._merge()

    def _add_sorted(self, a, pos, base):
        idx = torch.arange(base, base + a.shape[0], device=a.device).expand(a.shape[1], -1)
        values, indices, p = a.t(), idx, None if pos is None else pos.t()
        if self.values is not None:
            assert self.indices is not None  # values and indices are set together
            values = torch.cat([self.values, values], 1)
            indices = torch.cat([self.indices, indices], 1)
            if p is not None:
                assert self.pos is not None  # a layer gives positions with every batch or never
                p = torch.cat([self.pos, p], 1)
        self.values, self.indices, self.pos = _sort_select(values, indices, p, self.k, self.largest)

    def _add_dense(self, a, pos, base):
        s = a.float() if self.largest else -a.float()
        idx = torch.arange(base, base + a.shape[0], device=a.device).unsqueeze(1)
        keys = _encode(s, idx).t()
        p = None if pos is None else pos.t()
        if self.keys is not None:
            keys = torch.cat([self.keys, keys], 1)
            if p is not None:
                assert self.pos is not None  # a layer gives positions with every batch or never
                p = torch.cat([self.pos, p], 1)
        keys, where = keys.topk(min(self.k, keys.shape[1]), dim=1)
        self.keys = keys
        self.pos = None if p is None else p.gather(1, where)
        if self.filled == self.k:
            self.thr = _decode_values(keys[:, -1])

    def _start(self, a, pos, base) -> bool:
        """Fill the buffers from a first batch of at least k examples without encoding all of it.

        With the batch cut into at least k groups, the k-th largest group maximum of a unit is
        at most its k-th largest value, and at least k values reach it: every value at or above
        it is a candidate, and the merge orders them exactly. False (nothing changed) if NaNs
        get in the way.
        """
        a = a.contiguous()
        b = a.shape[0]
        size = math.gcd(b, _START_GROUP)
        while size > 1 and b // size < self.k:
            size //= 2
        groups = a.view(b // size, size, a.shape[1])
        if self.largest:
            thr = groups.amax(1).topk(self.k, dim=0, sorted=False).values.amin(0).float()
        else:
            thr = groups.amin(1).topk(self.k, dim=0, largest=False, sorted=False).values.amax(0).float().neg_()
        self.keys = a.new_empty((a.shape[1], 0), dtype=torch.int64)
        self.pos = None if pos is None else a.new_empty((a.shape[1], 0), dtype=torch.int64)
        self._collect(a, pos, base, thr, inclusive=True, size=size)
        if self.pending and self._merge(thr, inclusive=True):
            return True
        self.keys = self.pos = None
        return False

    def _collect(self, a, pos, base, thr, inclusive: bool, size: int | None = None) -> None:
        """Queue the groups of rows of ``a`` whose maximum beats ``thr`` (sign applied), per unit."""
        a = a.contiguous()
        b, u = a.shape
        size = size or math.gcd(b, _GROUP)
        if self.pending and self.pending[0][2].shape[1] != size:
            self._merge()  # a batch of another size (the last one): keep blocks of one shape
        groups = a.view(b // size, size, u)
        best = groups.amax(1) if self.largest else groups.amin(1).neg_()
        beats = torch.ge if inclusive else torch.gt
        group, unit = beats(best, thr).nonzero().unbind(1)  # (group, unit) pairs that may enter
        if group.shape[0] == 0:
            return
        values = groups[group, :, unit]  # [hits, size]
        p = None if pos is None else pos.reshape(b // size, size, u)[group, :, unit]
        self.pending.append((unit, group * size + base, values, p))
        self.pending_count += values.numel()

    def _merge(self, thr: torch.Tensor | None = None, inclusive: bool = False) -> bool:
        """Merge the queued groups into the buffers; False if a unit would hold fewer than k."""
        if not self.pending:
            return True
        parts, self.pending, self.pending_count = self.pending, [], 0

        def join(items: list[torch.Tensor]) -> torch.Tensor:
            return items[0] if len(items) == 1 else torch.cat(items)

        unit = join([part[0] for part in parts])
        first = join([part[1] for part in parts])
        values = join([part[2] for part in parts])
        # a layer gives positions with every batch or never: all of parts[i][3] are None or none is
        p = None if parts[0][3] is None else join([part[3] for part in parts if part[3] is not None])
        s = values.float() if self.largest else -values.float()
        thr = self.thr if thr is None else thr
        assert thr is not None and self.keys is not None  # set by the start (or passed in by it)
        # only values beating the threshold can enter; past the start, an equal value loses the
        # tie (its index is higher than every index already seen), so the test is strict
        beats = torch.ge if inclusive else torch.gt
        hit, row = beats(s, thr[unit].unsqueeze(1)).nonzero().unbind(1)
        unit, order = unit[hit].sort()  # group the candidates by unit
        hit, row = hit[order], row[order]
        keys = _encode(s[hit, row], first[hit] + row)
        n_units, have = self.keys.shape
        counts = torch.bincount(unit, minlength=n_units)
        if have == 0 and int(counts.min()) < self.k:  # at the start, with NaNs
            return False
        touched = counts.nonzero().squeeze(1)
        width = int(counts.max())
        device = unit.device
        slot = torch.arange(unit.shape[0], device=device) - (counts.cumsum(0) - counts)[unit]
        line = (counts > 0).cumsum(0).sub_(1)[unit]  # row of each candidate's unit in `touched`
        padded = torch.full((touched.shape[0], width), _INT64_MIN, dtype=torch.int64, device=device)
        padded[line, slot] = keys
        new, where = torch.cat([self.keys.index_select(0, touched), padded], 1).topk(self.k, dim=1)
        if have == 0:  # the start: every unit is touched
            self.keys = new
            self.thr = _decode_values(new[:, -1])
        else:
            assert self.thr is not None  # the buffer is full past the start
            self.keys.index_copy_(0, touched, new)
            self.thr.index_copy_(0, touched, _decode_values(new[:, -1]))
        if p is not None:
            assert self.pos is not None  # _start creates it along with the keys
            ppad = torch.zeros((touched.shape[0], width), dtype=torch.int64, device=device)
            ppad[line, slot] = p[hit, row]
            merged = torch.cat([self.pos.index_select(0, touched), ppad], 1).gather(1, where)
            if have == 0:
                self.pos = merged
            else:
                self.pos.index_copy_(0, touched, merged)
        return True

    def result(self, units: torch.Tensor, layer: str) -> TopK:
        if self.fast:
            assert self.keys is not None and self.dtype is not None  # at least one batch was added
            s = _decode_values(self.keys)
            values = (s if self.largest else -s + 0.0).to(self.dtype)  # zeros come back as +0.0
            indices = _decode_indices(self.keys)
        else:
            assert self.values is not None and self.indices is not None  # at least one batch was added
            values, indices = self.values, self.indices
        positions = None
        if self.pos is not None:
            assert self.width is not None  # set with the first conv output
            positions = torch.stack([self.pos // self.width, self.pos % self.width], dim=-1)
            positions = positions.cpu()
        return TopK(values.cpu(), indices.cpu(), positions, units.cpu(), layer, self.largest, self.k)


def _unit_activations(out: torch.Tensor, units: torch.Tensor | None, spatial: str, layer: str):
    """``[B, U]`` activations (and ``[B, U]`` flat argmax positions) from a layer output."""
    if out.ndim not in (2, 4):
        raise ValueError(
            f"mine_topk supports layers with outputs [N, C] or [N, C, H, W]; {layer!r} gives {tuple(out.shape)}"
        )
    if units is not None:
        out = out.index_select(1, units)
    if out.ndim == 2:
        return out, None
    flat = out.flatten(2)
    if spatial == "mean":
        return flat.mean(2), None
    values, pos = flat.max(2)  # the first position of the maximum
    return values, pos


def mine_topk(
    model: nn.Module,
    layer: str,
    data: torch.Tensor | Iterable,
    k: int = 16,
    units: Sequence[int] | torch.Tensor | int | None = None,
    spatial: str = "max",
    largest: bool = True,
    batch_size: int = 1024,
    index_offset: int = 0,
    progress: bool = False,
    check_range: bool = True,
) -> TopK:
    """The ``k`` examples with the largest (or smallest) activation for every unit of ``layer``.

    Args:
        model: any ``nn.Module``; it runs on its own device, in eval mode (its mode is restored
            after), under ``torch.inference_mode``, and only up to ``layer``.
        layer: a name from ``model.named_modules()``.
        data: a Tensor ``[N, ...]`` of inputs (cut into batches of ``batch_size``), or any
            iterable of batches, a batch being a Tensor or a tuple/list whose first element is
            the input (a DataLoader over ``(image, label)`` pairs works). uint8 batches are
            taken as images in 0..255 and scaled to [0, 1] in the model's float dtype; other
            dtypes are passed unchanged. The data is read once.
        k: examples kept per unit. When the data holds fewer than ``k`` examples, all of them
            are kept: the result has ``min(k, N)`` columns (``TopK.requested_k`` remembers k).
        units: unit (channel) numbers to mine, in the order wanted; ``None`` for all units.
        spatial: how a conv channel ([N, C, H, W] output) becomes one number per example:
            ``"max"`` (its spatial position is kept in ``TopK.positions``; the first maximum
            in row-major order on ties) or ``"mean"``. The same reduction is used for the
            bottom-k.
        largest: ``True`` for the top-k, ``False`` for the bottom-k (most negative first).
        batch_size: batch size when ``data`` is a Tensor.
        index_offset: dataset index of the first example (for shards: the shard's start).
        progress: show a tqdm progress bar.
        check_range: 4-D float batches are images, which this project takes in [0, 1]: the
            first batch is checked and values outside refused with the range seen and the fix.
            ``False`` for 4-D inputs that are not images.

    Returns:
        :class:`TopK`, on the CPU, ordered best first; equal values keep the lower dataset
        index first. NaN activations have no defined order.

    Raises:
        ValueError: unknown layer, unit out of range, ``k < 1``, empty data, unknown
            ``spatial``, a layer output that is not 2-D or 4-D, a shuffled DataLoader, or
            image values outside [0, 1] (``ImageRangeError``).
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if spatial not in SPATIAL_REDUCTIONS:
        raise ValueError(f"spatial must be one of {SPATIAL_REDUCTIONS}, got {spatial!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if index_offset < 0:
        raise ValueError(f"index_offset must be >= 0, got {index_offset}")
    unit_list = _as_units(units)
    if isinstance(data, torch.Tensor) and (data.ndim == 0 or data.shape[0] == 0):
        raise ValueError("mine_topk got empty data (no examples)")

    device = model_device(model)
    dtype = _float_dtype(model)
    _refuse_shuffled(data)
    total = None
    if isinstance(data, torch.Tensor):
        total = math.ceil(data.shape[0] / batch_size)
    elif hasattr(data, "__len__"):
        total = len(cast(Sized, data))
    batches = progress_iter(_batches(data, batch_size), progress, f"top-k {layer}", total=total, leave=True)

    running = _Running(k, largest)
    sel: torch.Tensor | None = None
    channels = None
    seen = 0
    was_training = model.training
    # stop=True ends the forward pass in the hook right after `layer` has run, so no later
    # module (an in-place ReLU, say) can touch its output before we read it: no copy needed.
    try:
        with Capture(model, layer, stop=True, clone=False) as cap, torch.inference_mode():
            model.eval()
            for x in batches:
                if x.ndim == 0:
                    raise ValueError("mine_topk: a batch must have a batch dimension, got a 0-d tensor")
                n = x.shape[0]
                if n == 0:
                    continue
                if index_offset + seen + n - 1 > _MAX_INDEX:
                    raise ValueError(f"dataset indices above {_MAX_INDEX} are not supported")
                if check_range and seen == 0 and x.ndim == 4 and x.is_floating_point():
                    check_image_range(x, "mine_topk data")
                out = cap(_prepare(x, device, dtype))[layer]
                if channels is None:
                    channels = out.shape[1] if out.ndim >= 2 else 0
                    sel = _check_units(unit_list, channels, layer, out)
                    if out.ndim == 4:
                        running.width = out.shape[3]
                a, pos = _unit_activations(out, sel, spatial, layer)
                running.add(a, pos, index_offset + seen)
                seen += n
            running.finish()
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("mine_topk got empty data (no examples)")
    if unit_list is not None:
        all_units = unit_list
    else:
        assert channels is not None  # set by the first non-empty batch
        all_units = torch.arange(channels)
    return running.result(all_units, layer)


def _check_units(units: torch.Tensor | None, channels: int, layer: str, out: torch.Tensor):
    if out.ndim not in (2, 4):
        return None  # _unit_activations raises the error
    if units is None:
        return None
    bad = units[(units < 0) | (units >= channels)]
    if bad.numel():
        raise ValueError(
            f"unit {int(bad[0])} is out of range for layer {layer!r}, which has {channels} units "
            f"(valid: 0..{channels - 1})"
        )
    return units.to(out.device)
