"""Scores of attribution maps: faithfulness, robustness, complexity and randomization, in pure torch.

Every score is computed for several units at once. A *unit* is what
:func:`~interp.optvis.attribution.neuron_attributions` explains: a model, a layer name and a unit index, the unit's
value being ``acts[:, unit]`` for a Linear output and the channel's spatial mean for a conv output (an output class
is a unit of the final layer, e.g. ``dense_3`` of the MLP).
Maps are given per unit and input, shaped ``[U, N, *input_shape]`` (``U`` units, ``N`` inputs), or ``[U, N, 1, H, W]``
for maps of pixels that cover all channels. A *feature* is one element of the map: one input element when the map has
the input's shape, one pixel (all its channels at once) when the map has one channel and the input several.

* :func:`deletion` and :func:`insertion`: pixel flipping (Bach et al. 2015; Samek et al. 2017; Petsiuk et al. 2018);
* :func:`faithfulness_correlation` (Bhatt et al. 2020);
* :func:`max_sensitivity` (Yeh et al. 2019);
* :func:`sparseness`: the Gini index of the map (Chalasani et al. 2020);
* :func:`model_parameter_randomization`: cascading randomization from the top (Adebayo et al. 2018).

Each returns a small dataclass of CPU tensors (per unit and input) with a ``summary()`` of means. Random draws come
from a ``torch.Generator`` seeded with ``seed``, or are given explicitly (``subsets=``, ``noise=``), so that another
implementation (``tests/test_scores.py`` checks every score against Quantus 0.6.0) can use the same draws.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp.optvis.capture import Capture, frozen, get_layer, model_device

Explain = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]
"""An explanation function ``(model, inputs [N, ...], unit) -> maps`` shaped like ``inputs``."""

__all__ = [
    "Explain",
    "FaithfulnessCorrelation",
    "ParameterRandomization",
    "PerturbationCurve",
    "Sensitivity",
    "Sparseness",
    "blurred",
    "deletion",
    "explainer",
    "faithfulness_correlation",
    "gini",
    "max_sensitivity",
    "model_parameter_randomization",
    "pearson",
    "randomizable_layers",
    "spearman_rows",
    "sparseness",
    "unit_values",
]


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


# ---------------------------------------------------------------------------------------------------------------------
# pixel flipping: deletion and insertion


@dataclass
class PerturbationCurve:
    """What :func:`deletion` and :func:`insertion` return.

    Attributes:
        fractions: ``[S + 1]``, the fraction of features replaced at each step (0 first, 1 last).
        curves: ``[U, N, S + 1]``, the unit's value at each step.
        auc: ``[U, N]``, the trapezoidal area under ``curves`` over ``fractions``.
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
    """

    fractions: torch.Tensor
    curves: torch.Tensor
    auc: torch.Tensor
    order: str

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of the AUC over units and inputs, and the mean start and end values."""
        return {
            "auc_mean": _nanmean(self.auc),
            "auc_std": _nanstd(self.auc),
            "start_mean": _nanmean(self.curves[..., 0]),
            "end_mean": _nanmean(self.curves[..., -1]),
        }


def _feature_ranks(flat_maps: torch.Tensor, order: str, use_abs: bool) -> torch.Tensor:
    """``ranks[u, i, f]``: the step order of feature ``f`` (0 = replaced first), ties by ascending feature index."""
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    a = flat_maps.double().abs() if use_abs else flat_maps.double()
    key = -a if order == "morf" else a
    sequence = key.sort(dim=-1, stable=True).indices
    position = torch.arange(a.shape[-1], device=a.device).expand_as(sequence)
    return torch.empty_like(sequence).scatter_(-1, sequence, position)


def _flip(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    inputs: torch.Tensor,
    maps: torch.Tensor,
    baseline: float | torch.Tensor,
    features_per_step: int,
    order: str,
    use_abs: bool,
    batch_size: int,
    insert: bool,
) -> PerturbationCurve:
    if features_per_step < 1:
        raise ValueError(f"features_per_step must be >= 1, got {features_per_step}")
    device = model_device(model)
    x = inputs.detach().to(device)
    unit_list = list(units)
    flat, group = _as_unit_maps(maps.detach(), x, len(unit_list))
    n_units, n, n_features = flat.shape
    ranks = _feature_ranks(flat, order, use_abs).to(device)  # [U, N, F]
    steps = math.ceil(n_features / features_per_step)
    replaced = (torch.arange(steps + 1, device=device) * features_per_step).clamp(max=n_features)
    xg = _grouped(x, group)
    bg = _grouped(_baseline_like(baseline, x), group)
    start_img, end_img = (bg, xg) if insert else (xg, bg)
    unit_idx = torch.as_tensor(unit_list, dtype=torch.long, device=device)

    def make_rows(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.arange(start, stop, device=device)
        pair, k = r // (steps + 1), r % (steps + 1)
        u, i = pair // n, pair % n
        mask = (ranks[u, i] < replaced[k].unsqueeze(1)).unsqueeze(1)  # [B, 1, F]
        rows = torch.where(mask, end_img[i], start_img[i])
        return rows.reshape(len(r), *x.shape[1:]), unit_idx[u]

    values = _row_values(model, layer, n_units * n * (steps + 1), make_rows, batch_size)
    curves = values.reshape(n_units, n, steps + 1).cpu()
    fractions = (replaced.double() / n_features).cpu()
    auc = torch.trapezoid(curves.double(), fractions, dim=-1)
    return PerturbationCurve(fractions, curves, auc, order)


def deletion(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    inputs: torch.Tensor,
    maps: torch.Tensor,
    baseline: float | torch.Tensor = 0.0,
    features_per_step: int = 1,
    order: str = "morf",
    abs: bool = False,
    batch_size: int = 512,
) -> PerturbationCurve:
    """Deletion (pixel flipping; Bach et al. 2015, Samek et al. 2017): replace features by the baseline, most
    relevant first, and follow the unit's value. A faithful map makes it fall fast: a low area under the curve.

    Step ``k = 0..S`` (``S = ceil(F / features_per_step)``) replaces the first ``min(k * features_per_step, F)``
    features of the order by ``baseline``; ``curves[..., k]`` is the unit's value then, at ``fractions[k]`` =
    that count ``/ F`` (the x axis runs from 0 to 1). ``auc`` is the trapezoidal area over ``fractions``. The order
    sorts the signed attributions (``abs=True``: their magnitudes) in descending order for ``"morf"``, ascending
    for ``"lerf"``; ties go by ascending feature index (flat position in the map) either way. A one-channel map
    of a multi-channel input replaces all channels of a pixel at once.

    References:
        Bach et al., "On pixel-wise explanations for non-linear classifier decisions by layer-wise relevance
        propagation", PLoS ONE 2015. Samek et al., "Evaluating the visualization of what a deep neural network has
        learned", IEEE TNNLS 2017.

    Differences from Quantus 0.6.0 ``PixelFlipping``: Quantus's curve leaves out the unperturbed value (our
    ``curves[..., 1:]`` is its curve) and its AUC is ``np.trapz`` with ``dx=1``, so ours equals
    ``((c_0 + c_1) / 2 + AUC_quantus) / S`` when ``F`` is a multiple of ``features_per_step``; Quantus orders ties by
    ``np.argsort(-a)`` (not stable), normalises the map by its maximum (``normalise=True``, which does not change the
    order) and its default baseline ``"black"`` is the smallest value of each image; it flattens a broadcast
    one-channel map and so orders the channels of a pixel separately; it reads softmax outputs unless
    ``softmax=False``.

    Args:
        model: the network (eval mode inside).
        layer: the units' layer (the final layer for output classes).
        units: the ``U`` unit indices.
        inputs: ``[N, ...]`` inputs.
        maps: ``[U, N, ...]`` attributions, shaped like the inputs per item (or one channel).
        baseline: the replacement value, or a tensor broadcastable to ``inputs`` (e.g. :func:`blurred` ``(inputs)``).
        features_per_step: features replaced per step.
        order: ``"morf"`` or ``"lerf"``.
        abs: order by magnitude instead of signed value.
        batch_size: perturbed inputs per forward pass.

    Returns:
        The curves, their x axis and AUCs, on the CPU.
    """
    return _flip(model, layer, units, inputs, maps, baseline, features_per_step, order, abs, batch_size, insert=False)


def insertion(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    inputs: torch.Tensor,
    maps: torch.Tensor,
    baseline: float | torch.Tensor = 0.0,
    features_per_step: int = 1,
    order: str = "morf",
    abs: bool = False,
    batch_size: int = 512,
) -> PerturbationCurve:
    """Insertion (Petsiuk et al. 2018): start from the baseline and put back the input's features, most relevant
    first. A faithful map makes the unit's value rise fast: a high area under the curve.

    The same steps, order, ties, x axis and AUC as :func:`deletion`, with the roles of the input and the baseline
    swapped: step ``k`` holds the input's values at the first ``min(k * features_per_step, F)`` features of the order
    and the baseline elsewhere, so ``curves[..., 0]`` is the unit's value on the baseline and ``curves[..., -1]`` on
    the input. Quantus 0.6.0 has no insertion metric; its ``PixelFlipping`` run on the baseline images with a
    perturbation that copies the inputs' values in computes the same curve (``tests/test_scores.py``).

    References:
        Petsiuk, Das and Saenko, "RISE: Randomized input sampling for explanation of black-box models", BMVC 2018.

    Args:
        model: the network (eval mode inside).
        layer: the units' layer.
        units: the ``U`` unit indices.
        inputs: ``[N, ...]`` inputs.
        maps: ``[U, N, ...]`` attributions.
        baseline: the start value, or a tensor broadcastable to ``inputs``.
        features_per_step: features inserted per step.
        order: ``"morf"`` or ``"lerf"``.
        abs: order by magnitude instead of signed value.
        batch_size: perturbed inputs per forward pass.

    Returns:
        The curves, their x axis and AUCs, on the CPU.
    """
    return _flip(model, layer, units, inputs, maps, baseline, features_per_step, order, abs, batch_size, insert=True)


# ---------------------------------------------------------------------------------------------------------------------
# faithfulness correlation


@dataclass
class FaithfulnessCorrelation:
    """What :func:`faithfulness_correlation` returns.

    Attributes:
        correlation: ``[U, N]``, Pearson correlation of ``attribution_sums`` and ``output_drops`` over the runs.
        attribution_sums: ``[U, N, R]``, the sum of the map over each run's subset.
        output_drops: ``[U, N, R]``, ``f(x) - f(x with the subset set to the baseline)``.
        subsets: ``[U, N, R, S]``, the feature indices of each run.
    """

    correlation: torch.Tensor
    attribution_sums: torch.Tensor
    output_drops: torch.Tensor
    subsets: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of the correlation (``nan`` entries left out)."""
        return {"correlation_mean": _nanmean(self.correlation), "correlation_std": _nanstd(self.correlation)}


def faithfulness_correlation(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    inputs: torch.Tensor,
    maps: torch.Tensor,
    baseline: float | torch.Tensor = 0.0,
    n_runs: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
    subsets: torch.Tensor | None = None,
    batch_size: int = 512,
) -> FaithfulnessCorrelation:
    """Faithfulness correlation (Bhatt et al. 2020): for ``n_runs`` random feature subsets, the Pearson correlation
    between the sum of the attributions over the subset and the drop of the unit's value when the subset is set to
    the baseline. High is faithful.

    The subsets are ``subset_size`` distinct features drawn uniformly (``torch.randperm`` with a generator seeded
    with ``seed``: one draw per input and run, the same for every unit, so units are compared on the same
    perturbations), or given as ``subsets`` (indices broadcastable to ``[U, N, R, S]``). A run whose perturbations
    give a constant drop (or constant sums) makes the correlation ``nan``.

    References:
        Bhatt, Weller and Moura, "Evaluating and aggregating feature-based model explanations", IJCAI 2020.

    Differences from Quantus 0.6.0 ``FaithfulnessCorrelation``: Quantus draws its subsets with
    ``np.random.choice`` per run and input (different per unit when units are rows of one call), defaults to
    ``subset_size=224``, the ``"black"`` baseline (each image's minimum) and ``return_aggregate=True`` (the mean over
    inputs); its max-normalisation of the map does not change a Pearson correlation.

    Args:
        model: the network (eval mode inside).
        layer: the units' layer.
        units: the ``U`` unit indices.
        inputs: ``[N, ...]`` inputs.
        maps: ``[U, N, ...]`` attributions.
        baseline: the replacement value, or a tensor broadcastable to ``inputs``.
        n_runs: number of random subsets ``R``.
        subset_size: features per subset ``S``; ``None``: a tenth of the features (at least one).
        seed: seed of the subset draws.
        subsets: explicit subsets (long), broadcastable to ``[U, N, R, S]``; ``n_runs``, ``subset_size`` and
            ``seed`` are then unused.
        batch_size: perturbed inputs per forward pass.

    Returns:
        The correlations with the sums, drops and subsets they come from, on the CPU.
    """
    device = model_device(model)
    x = inputs.detach().to(device)
    unit_list = list(units)
    flat, group = _as_unit_maps(maps.detach(), x, len(unit_list))
    n_units, n, n_features = flat.shape
    if subsets is None:
        size = max(1, n_features // 10) if subset_size is None else int(subset_size)
        if not 1 <= size <= n_features:
            raise ValueError(f"subset_size must be in 1..{n_features}, got {size}")
        g = torch.Generator().manual_seed(seed)
        drawn = torch.stack([torch.randperm(n_features, generator=g)[:size] for _ in range(n * n_runs)])
        subsets = drawn.reshape(1, n, n_runs, size)
    subsets = subsets.long().cpu()
    while subsets.dim() < 4:
        subsets = subsets.unsqueeze(0)
    subsets = subsets.expand(n_units, n, -1, -1)
    runs = subsets.shape[2]
    sums = flat.double().cpu().unsqueeze(2).expand(-1, -1, runs, -1).gather(-1, subsets).sum(-1)

    xg = _grouped(x, group)
    bg = _grouped(_baseline_like(baseline, x), group)
    unit_idx = torch.as_tensor(unit_list, dtype=torch.long, device=device)
    subsets_dev = subsets.to(device)

    def make_rows(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.arange(start, stop, device=device)
        pair, run = r // runs, r % runs
        u, i = pair // n, pair % n
        mask = torch.zeros(len(r), n_features, dtype=torch.bool, device=device)
        mask.scatter_(1, subsets_dev[u, i, run], True)
        rows = torch.where(mask.unsqueeze(1), bg[i], xg[i])
        return rows.reshape(len(r), *x.shape[1:]), unit_idx[u]

    perturbed = _row_values(model, layer, n_units * n * runs, make_rows, batch_size).reshape(n_units, n, runs)
    original = unit_values(model, layer, unit_list, x, batch_size).T.to(perturbed.device)  # [U, N]
    drops = (original.unsqueeze(-1) - perturbed).cpu()
    return FaithfulnessCorrelation(pearson(sums, drops), sums, drops, subsets)


# ---------------------------------------------------------------------------------------------------------------------
# max-sensitivity


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


@dataclass
class Sensitivity:
    """What :func:`max_sensitivity` returns.

    Attributes:
        max_sensitivity: ``[U, N]``, ``max_s ||Phi(x + delta_s) - Phi(x)||_2`` (Yeh et al.'s definition).
        relative: ``[U, N]``, the same divided by ``||Phi(x)||_2`` (Quantus's default normalisation).
        distances: ``[U, N, S]``, ``||Phi(x + delta_s) - Phi(x)||_2`` for each noise sample.
    """

    max_sensitivity: torch.Tensor
    relative: torch.Tensor
    distances: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Means of the absolute and relative max-sensitivity."""
        return {"max_sensitivity_mean": _nanmean(self.max_sensitivity), "relative_mean": _nanmean(self.relative)}


def max_sensitivity(
    model: nn.Module,
    units: Sequence[int],
    inputs: torch.Tensor,
    explain: Explain,
    maps: torch.Tensor | None = None,
    radius: float = 0.02,
    n_samples: int = 10,
    seed: int = 0,
    noise: torch.Tensor | None = None,
) -> Sensitivity:
    """Max-sensitivity (Yeh et al. 2019): the largest change of the explanation under small input noise,
    ``max_{||delta||_inf <= r} ||Phi(x + delta) - Phi(x)||_2``, estimated by ``n_samples`` draws of ``delta``
    uniform in ``[-r, r]`` on every input element (the perturbed inputs are not clipped to the data range). Low is
    robust.

    The noise comes from ``torch.rand`` with a generator seeded with ``seed`` (``[S, N, ...]``, the same for every
    unit) or is given as ``noise``. The explanation of the noisy inputs is computed by ``explain`` (one call per
    unit on all ``S * N`` noisy inputs); ``maps`` are the unperturbed explanations (computed with ``explain`` when
    ``None``).

    References:
        Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (in)fidelity and sensitivity of explanations",
        NeurIPS 2019.

    Differences from Quantus 0.6.0 ``MaxSensitivity``: Quantus divides by ``||Phi(x)||_2`` by default
    (``norm_denominator=fro_norm``; our ``relative``), defaults to ``lower_bound=0.2`` (its radius) and 200 samples,
    draws the noise with ``np.random.uniform`` per sample over the whole batch, and skips nothing unless
    ``return_nan_when_prediction_changes=True``.

    Args:
        model: the network passed to ``explain``.
        units: the ``U`` unit indices.
        inputs: ``[N, ...]`` inputs.
        explain: ``(model, inputs, unit) -> maps`` (:func:`explainer` makes one).
        maps: ``[U, N, ...]`` explanations of ``inputs``, or ``None``.
        radius: the noise bound ``r`` (L-infinity).
        n_samples: noise draws ``S``.
        seed: seed of the noise.
        noise: explicit noise ``[S, N, ...]``; ``radius``, ``n_samples`` and ``seed`` are then unused.

    Returns:
        The max-sensitivities and the distance of each sample, on the CPU.
    """
    x = inputs.detach()
    unit_list = list(units)
    if noise is None:
        g = torch.Generator().manual_seed(seed)
        noise = (torch.rand((n_samples, *x.shape), generator=g, dtype=torch.float64) * 2 - 1) * radius
    noise = noise.to(device=x.device, dtype=x.dtype)
    samples = noise.shape[0]
    noisy = (x.unsqueeze(0) + noise).reshape(samples * x.shape[0], *x.shape[1:])
    distances, norms = [], []
    for k, unit in enumerate(unit_list):
        base = (explain(model, x, unit) if maps is None else maps[k]).detach().cpu().double()
        moved = explain(model, noisy, unit).detach().cpu().double().reshape(samples, *base.shape)
        diff = (moved - base.unsqueeze(0)).flatten(2).norm(dim=-1)  # [S, N]
        distances.append(diff.T)
        norms.append(base.flatten(1).norm(dim=-1))
    dist = torch.stack(distances)  # [U, N, S]
    worst = dist.max(-1).values
    return Sensitivity(worst, worst / torch.stack(norms), dist)


# ---------------------------------------------------------------------------------------------------------------------
# sparseness


@dataclass
class Sparseness:
    """What :func:`sparseness` returns.

    Attributes:
        gini: ``[U, N]``, the Gini index of each map's magnitudes (0: flat, towards 1: concentrated).
    """

    gini: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of the Gini index."""
        return {"gini_mean": _nanmean(self.gini), "gini_std": _nanstd(self.gini)}


def sparseness(maps: torch.Tensor, abs: bool = True) -> Sparseness:
    """Sparseness (Chalasani et al. 2020): the Gini index (:func:`gini`) of the flattened map's magnitudes. High
    means the attribution sits on few features.

    References:
        Chalasani, Chen, Chowdhury, Wu and Jha, "Concise explanations of neural networks using adversarial
        training", ICML 2020.

    Differences from Quantus 0.6.0 ``Sparseness``: Quantus adds ``1e-7`` to every entry before the index and, by
    default, divides the map by its largest magnitude first (``normalise=True``); the index is scale-invariant but
    the ``1e-7`` is not, so Quantus's value is our ``gini(|a| / max|a| + 1e-7)``.

    Args:
        maps: ``[U, N, ...]`` attributions.
        abs: take magnitudes (``False``: the map must be non-negative).

    Returns:
        The Gini indices, ``[U, N]``, on the CPU.
    """
    if maps.dim() < 3:
        raise ValueError(f"maps must be shaped [units, inputs, ...], got {tuple(maps.shape)}")
    m = maps.detach().cpu().double()
    m = m.abs() if abs else m
    if bool((m < 0).any()):
        raise ValueError("sparseness needs non-negative maps: pass abs=True")
    return Sparseness(gini(m.reshape(*m.shape[:2], -1)))


# ---------------------------------------------------------------------------------------------------------------------
# cascading model-parameter randomization


def randomizable_layers(model: nn.Module, layer: str, example: torch.Tensor) -> list[str]:
    """The layers that cascading randomization re-initializes for units of ``layer``, from the top: modules with
    their own parameters and a ``reset_parameters`` method that run in the forward pass up to ``layer`` (included),
    in reverse order of execution (a module that runs twice counts at its first run).

    Args:
        model: the network.
        layer: the units' layer.
        example: an input batch to trace the forward pass (one item is enough).

    Returns:
        Layer names, the top one first.
    """
    candidates = {
        name: m
        for name, m in model.named_modules()
        if name and callable(getattr(m, "reset_parameters", None)) and any(True for _ in m.parameters(recurse=False))
    }
    fired: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: fired.append(name) if name not in fired else None)
        for name, m in candidates.items()
    ]
    try:
        with frozen(model), torch.no_grad(), Capture(model, [layer]) as cap:
            cap(example.detach()[:1].to(model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return fired[::-1]


@dataclass
class ParameterRandomization:
    """What :func:`model_parameter_randomization` returns.

    Attributes:
        layers: ``K`` layer names, top first: step ``k`` has re-initialized ``layers[: k + 1]``.
        similarity: ``[U, N, K]``, Spearman correlation of the original and the randomized map after step ``k``.
    """

    layers: list[str]
    similarity: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean similarity after the first step, averaged over the steps, and with every layer randomized."""
        if self.similarity.shape[-1] == 0:
            return {"first_mean": float("nan"), "average_mean": float("nan"), "last_mean": float("nan")}
        return {
            "first_mean": _nanmean(self.similarity[..., 0]),
            "average_mean": _nanmean(self.similarity),
            "last_mean": _nanmean(self.similarity[..., -1]),
        }


def _reinitialized(model: nn.Module, layers: Sequence[str], seed: int) -> Iterator[tuple[str, nn.Module]]:
    """A copy of ``model`` re-initialized cumulatively, one more layer of ``layers`` per step."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    for name in layers:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            modules[name].reset_parameters()
        yield name, clone


def model_parameter_randomization(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    inputs: torch.Tensor,
    explain: Explain,
    maps: torch.Tensor | None = None,
    seed: int = 0,
    abs: bool = True,
    layers: Sequence[str] | None = None,
) -> ParameterRandomization:
    """Cascading model-parameter randomization (Adebayo et al. 2018, "MPRT"): re-initialize the layers one by one
    from the top down, keeping the earlier ones random, and after each step measure the Spearman rank correlation
    between the original map and the map of the randomized model. A map that stays similar does not depend on the
    weights: it explains the input, not the model. Low is good.

    The layers are :func:`randomizable_layers` (only those that run up to the unit's layer: the layers above it
    cannot change its map) or ``layers``. Each is re-initialized by its own ``reset_parameters`` right after
    ``torch.manual_seed(seed)`` (inside ``torch.random.fork_rng``: the global stream is left as it was), on a copy of
    the model. The correlation is over the flattened map's magnitudes (``abs=True``) or signed values, ties averaged,
    ``nan`` for a constant map.

    References:
        Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity checks for saliency maps", NeurIPS 2018.

    Differences from Quantus 0.6.0 ``MPRT`` (``layer_order="top_down"``): Quantus seeds each re-initialization with
    ``seed + 1`` (our ``seed=s + 1`` matches its ``seed=s``), randomizes every module with a ``reset_parameters`` in
    ``named_modules`` order reversed (also those above the unit, whose correlation is 1), and normalises the maps by
    their maximum (``normalise=True``; a rank correlation does not change).

    Args:
        model: the network (not modified: a copy is randomized).
        layer: the units' layer.
        units: the ``U`` unit indices.
        inputs: ``[N, ...]`` inputs.
        explain: ``(model, inputs, unit) -> maps`` (:func:`explainer` makes one).
        maps: ``[U, N, ...]`` maps of the original model, or ``None`` (computed with ``explain``).
        seed: seed of every re-initialization.
        abs: compare magnitudes.
        layers: the layers to randomize, top first; ``None``: :func:`randomizable_layers`.

    Returns:
        The layer order and the correlations, on the CPU.
    """
    unit_list = list(units)
    order = list(layers) if layers is not None else randomizable_layers(model, layer, inputs)
    if maps is None:
        maps = torch.stack([explain(model, inputs, u).detach().cpu() for u in unit_list])
    original = maps.detach().cpu().double().reshape(len(unit_list), inputs.shape[0], -1)
    original = original.abs() if abs else original
    steps = []
    for _, randomized in _reinitialized(model, order, seed):
        random_maps = torch.stack([explain(randomized, inputs, u).detach().cpu() for u in unit_list]).double()
        random_maps = random_maps.reshape(original.shape)
        steps.append(spearman_rows(original, random_maps.abs() if abs else random_maps))
    similarity = torch.stack(steps, dim=-1) if steps else torch.zeros(len(unit_list), inputs.shape[0], 0)
    return ParameterRandomization(order, similarity)
