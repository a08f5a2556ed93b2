"""What every score shares: unit values, features of a map, baselines, correlations and the Gini index.

Maps are ``[U, N, *input_shape]`` (or ``[U, N, 1, H, W]``); see :mod:`interp.optvis.scores`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from interp.optvis.capture import Capture, frozen, get_layer, model_device

Explain = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]
"""An explanation function ``(model, inputs [N, ...], unit) -> maps`` shaped like ``inputs``."""

__all__ = ["Explain", "blurred", "explainer", "gini", "pearson", "spearman_rows", "unit_values"]


def _nanmean(t: torch.Tensor) -> float:
    t = t.double()
    finite = t[~torch.isnan(t)]
    return float(finite.mean()) if finite.numel() else float("nan")


def _nanstd(t: torch.Tensor) -> float:
    t = t.double()
    finite = t[~torch.isnan(t)]
    return float(finite.std(unbiased=False)) if finite.numel() else float("nan")


# ---------------------------------------------------------------------------------------------------------------------
# unit values


def _pick(acts: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Row ``r``'s value of unit ``units[r]``: the element of a Linear output, the spatial mean of a channel."""
    if units.numel() and (int(units.min()) < 0 or int(units.max()) >= acts.shape[1]):
        raise IndexError(f"unit index out of range: the layer has {acts.shape[1]} units, got {units.unique().tolist()}")
    rows = torch.arange(acts.shape[0], device=acts.device)
    picked = acts[rows, units.to(acts.device)]
    return picked if picked.dim() == 1 else picked.flatten(1).mean(1)


def _row_values(
    model: nn.Module,
    layer: str,
    n_rows: int,
    make_rows: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
) -> torch.Tensor:
    """Values of ``n_rows`` (input, unit) rows, made ``batch_size`` at a time by ``make_rows(start, stop)``."""
    out = []
    with frozen(model), torch.no_grad(), Capture(model, [layer], clone=False) as cap:
        for start in range(0, n_rows, batch_size):
            x, units = make_rows(start, min(start + batch_size, n_rows))
            out.append(_pick(cap(x)[layer], units).detach())
    return torch.cat(out) if out else torch.zeros(0)


def unit_values(
    model: nn.Module, layer: str, units: Sequence[int], inputs: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The values of ``units`` of ``layer`` on ``inputs``, shaped ``[N, U]`` (CPU).

    Args:
        model: the network (run in eval mode, restored after).
        layer: the layer name, as in ``model.named_modules()``.
        units: unit (Linear) or channel (conv: the spatial mean) indices.
        inputs: the inputs, ``[N, ...]``.
        batch_size: inputs per forward pass.

    Returns:
        The values, ``[N, U]``.
    """
    get_layer(model, layer)
    x = inputs.detach().to(model_device(model))
    idx = torch.as_tensor(list(units), dtype=torch.long)
    out = []
    with frozen(model), torch.no_grad(), Capture(model, [layer], clone=False) as cap:
        for start in range(0, len(x), batch_size):
            a = cap(x[start : start + batch_size])[layer]
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= a.shape[1]):
                raise IndexError(f"unit index out of range: {layer} has {a.shape[1]} units, got {idx.tolist()}")
            picked = a[:, idx.to(a.device)]
            out.append((picked if picked.dim() == 2 else picked.flatten(2).mean(2)).detach().cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------------------------
# features, baselines and statistics


def _as_unit_maps(maps: torch.Tensor, inputs: torch.Tensor, n_units: int) -> tuple[torch.Tensor, int]:
    """``maps`` as ``[U, N, F]`` plus the number of input channels each feature covers (1 or C)."""
    if maps.dim() == inputs.dim():  # one unit
        maps = maps.unsqueeze(0)
    if maps.shape[:2] != (n_units, inputs.shape[0]):
        raise ValueError(
            f"maps must be shaped [units, inputs, ...] = [{n_units}, {inputs.shape[0]}, ...], got {tuple(maps.shape)}"
        )
    per_item = tuple(maps.shape[2:])
    if per_item == tuple(inputs.shape[1:]):
        return maps.reshape(n_units, inputs.shape[0], -1), 1
    if inputs.dim() >= 3 and per_item == (1, *inputs.shape[2:]):
        return maps.reshape(n_units, inputs.shape[0], -1), int(inputs.shape[1])
    raise ValueError(f"maps of shape {per_item} per item do not fit inputs of shape {tuple(inputs.shape[1:])}")


def _grouped(x: torch.Tensor, group: int) -> torch.Tensor:
    """``x`` as ``[N, G, F]``: ``G`` input channels share each feature (``G`` is 1 or the channel count)."""
    return x.reshape(x.shape[0], group, -1) if group > 1 else x.reshape(x.shape[0], 1, -1)


def _baseline_like(baseline: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
    return torch.full_like(x, float(baseline))


def blurred(inputs: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """A Gaussian blur of ``inputs`` (``[N, C, H, W]``), a baseline that removes detail but keeps the colours.

    The kernel is ``exp(-d^2 / (2 sigma^2))`` normalised to sum 1, of radius ``ceil(3 sigma)`` (at most the image side
    minus one), separable, with reflect padding, computed in the inputs' dtype.

    Args:
        inputs: images, ``[N, C, H, W]``.
        sigma: standard deviation in pixels.

    Returns:
        The blurred images, same shape and dtype.
    """
    if sigma <= 0:
        return inputs.clone()
    n, c, h, w = inputs.shape
    radius = min(math.ceil(3 * sigma), h - 1, w - 1)
    d = torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-(d**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = inputs.reshape(n * c, 1, h, w)
    x = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = torch.nn.functional.conv2d(x, kernel.reshape(1, 1, 1, -1))
    x = torch.nn.functional.conv2d(x, kernel.reshape(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last dimension, in float64; ``nan`` where either side is constant.

    Args:
        a: values, ``[..., F]``.
        b: values of the same shape.

    Returns:
        The correlations, ``a.shape[:-1]``.
    """
    a, b = a.double(), b.double()
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    denom = a.norm(dim=-1) * b.norm(dim=-1)
    r = (a * b).sum(-1) / denom
    return torch.where(denom > 0, r.clamp(-1, 1), torch.full_like(r, float("nan")))


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..F along the last dimension, ties given their average rank (float64)."""
    flat = v.reshape(-1, v.shape[-1]).double()
    rows, f = flat.shape
    values, order = flat.sort(dim=-1, stable=True)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = starts.long().cumsum(-1) - 1
    position = torch.arange(1, f + 1, dtype=torch.float64, device=v.device).expand(rows, f)
    first = torch.full_like(values, float(f + 1)).scatter_reduce(1, group, position, "amin")
    last = torch.zeros_like(values).scatter_reduce(1, group, position, "amax")
    average = (first.gather(1, group) + last.gather(1, group)) / 2
    return torch.empty_like(values).scatter_(1, order, average).reshape(v.shape)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation along the last dimension (ties averaged), ``nan`` where either side is constant.

    Args:
        a: values, ``[..., F]``.
        b: values of the same shape.

    Returns:
        The correlations, ``a.shape[:-1]``.
    """
    return pearson(_average_ranks(a), _average_ranks(b))


def gini(values: torch.Tensor) -> torch.Tensor:
    """The Gini index of non-negative ``values`` along the last dimension (0: all equal, towards 1: one non-zero).

    With ``v_(1) <= ... <= v_(n)`` sorted, ``G = sum_k (2k - n - 1) v_(k) / (n sum_k v_(k))``; ``G = 0`` for an
    all-zero vector. Computed in float64.

    Args:
        values: non-negative values, ``[..., n]``.

    Returns:
        The indices, ``values.shape[:-1]``.
    """
    v = values.double().sort(dim=-1).values
    n = v.shape[-1]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    total = v.sum(-1)
    g = ((2 * k - n - 1) * v).sum(-1) / (n * total)
    return torch.where(total > 0, g, torch.zeros_like(g))


def explainer(layer: str, method: str = "saliency", **options) -> Explain:
    """An :data:`Explain` function for a unit of ``layer``, by :func:`~interp.optvis.attribution.neuron_attributions`.

    Args:
        layer: the units' layer.
        method: an attribution method of ``interp.optvis.attribution.METHODS``.
        **options: passed to ``neuron_attributions`` (e.g. ``n_steps`` for ``ig``).

    Returns:
        ``explain(model, inputs, unit) -> maps`` shaped like ``inputs``.
    """
    from interp.optvis.attribution import neuron_attributions

    def explain(model: nn.Module, inputs: torch.Tensor, unit: int) -> torch.Tensor:
        return neuron_attributions(model, layer, unit, inputs, method=method, **options).maps

    return explain
