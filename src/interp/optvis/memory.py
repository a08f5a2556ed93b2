"""How many units fit in one batched optimization: a memory probe for chunked rendering.

Rendering ``units=all`` of a large layer in one batch can exceed the accelerator's memory. The
probe renders a first small chunk, reads the peak memory it took and the memory still free, and
sizes the following chunks to fill a fraction of it (:func:`fitting_batch`). Per-unit seeds make a
unit's image independent of its chunk, so the chunked images are those of one batch.

:class:`CudaMemory` reads CUDA's allocator; anything with the same three methods (``reset``,
``peak``, ``free``) can stand in for it (the tests use a fake on the CPU)::

    meter = memory_meter(model)            # CudaMemory on a CUDA model, None on the CPU
    meter.reset(); ...render a chunk of 8...
    chunk = fitting_batch(meter.peak(), 8, meter.free())
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

__all__ = ["CudaMemory", "MemoryMeter", "PROBE_UNITS", "fitting_batch", "memory_meter"]

PROBE_UNITS = 8  # units in the probing chunk: more than one (a batch of one takes other kernels)


class MemoryMeter(Protocol):
    """What :func:`fitting_batch`'s callers read memory with: :class:`CudaMemory`, or a fake in the tests."""

    def reset(self) -> None:
        """Start measuring: the peak from here on."""

    def peak(self) -> int:
        """Bytes allocated at the peak since :meth:`reset`, above what was allocated then.

        Returns:
            The bytes.
        """

    def free(self) -> int:
        """Bytes that can still be allocated.

        Returns:
            The bytes.
        """


class CudaMemory:
    """:class:`MemoryMeter` of one CUDA device, from PyTorch's caching allocator.

    The peak is ``max_memory_allocated`` above the allocation at :meth:`reset`; free memory is the driver's free memory
    plus what the allocator holds but does not use.

    Args:
        device: the CUDA device.
    """

    def __init__(self, device: torch.device | str | int):
        self.device = torch.device(device)
        self.base = 0

    def reset(self) -> None:
        """Start measuring: synchronize, reset the peak statistics and remember the current allocation."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.base = torch.cuda.memory_allocated(self.device)

    def peak(self) -> int:
        """Bytes allocated at the peak since :meth:`reset`, above what was allocated then.

        Returns:
            The bytes (at least 0).
        """
        torch.cuda.synchronize(self.device)
        return max(0, torch.cuda.max_memory_allocated(self.device) - self.base)

    def free(self) -> int:
        """Bytes that can still be allocated: the driver's free memory plus what the allocator holds unused.

        Returns:
            The bytes.
        """
        free, _total = torch.cuda.mem_get_info(self.device)
        held = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return int(free + max(0, held))


def memory_meter(model: nn.Module) -> CudaMemory | None:
    """A :class:`CudaMemory` for the device of ``model``'s first parameter or buffer when it is a CUDA device.

    Args:
        model: the network.

    Returns:
        The meter, or ``None`` off CUDA (on the CPU the chunks are not sized by a probe).
    """
    tensor: torch.Tensor | None = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    if tensor is None or tensor.device.type != "cuda":
        return None
    return CudaMemory(tensor.device)


def fitting_batch(peak: int, probed: int, free: int, fraction: float = 0.8) -> int:
    """Units per chunk that fit in ``fraction`` of ``free`` bytes, when a chunk of ``probed`` units took ``peak`` bytes.

    Everything the probe allocated counts per unit: an overestimate, never an underestimate.

    Args:
        peak: bytes the probing chunk took at its peak.
        probed: units in the probing chunk.
        free: bytes that can still be allocated.
        fraction: the share of ``free`` to fill.

    Returns:
        The chunk size, at least 1.

    Raises:
        ValueError: ``probed < 1``.

    >>> fitting_batch(peak=800, probed=8, free=2000)   # 100 bytes a unit, 1600 usable
    16
    >>> fitting_batch(peak=0, probed=8, free=2000)     # nothing measured: no bound from memory
    1600
    """
    if probed < 1:
        raise ValueError(f"probed must be >= 1, got {probed}")
    per_unit = max(1.0, peak / probed)
    return max(1, int(fraction * free / per_unit))
