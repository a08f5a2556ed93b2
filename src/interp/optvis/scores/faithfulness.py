"""Faithfulness scores: deletion and insertion (pixel flipping) and faithfulness correlation.

* :func:`deletion` and :func:`insertion`: pixel flipping (Bach et al. 2015; Samek et al. 2017; Petsiuk et al. 2018);
* :func:`faithfulness_correlation` (Bhatt et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp.optvis.capture import model_device
from interp.optvis.scores.common import (
    _as_unit_maps,
    _baseline_like,
    _grouped,
    _nanmean,
    _nanstd,
    _row_values,
    pearson,
    unit_values,
)

__all__ = ["FaithfulnessCorrelation", "PerturbationCurve", "deletion", "faithfulness_correlation", "insertion"]


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
        """Mean and standard deviation of the AUC over units and inputs, and the mean start and end values.

        Returns:
            ``{"auc_mean", "auc_std", "start_mean", "end_mean"}`` (``nan`` entries left out).
        """
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
    perturbation that copies the inputs' values in computes the same curve (``tests/optvis/test_scores.py``).

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
        """Mean and standard deviation of the correlation (``nan`` entries left out).

        Returns:
            ``{"correlation_mean": ..., "correlation_std": ...}``.
        """
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
