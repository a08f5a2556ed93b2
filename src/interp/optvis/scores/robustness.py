"""Robustness: max-sensitivity (Yeh et al. 2019), the largest change of a map under small input noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp.optvis.scores.common import Explain, _nanmean

__all__ = ["Sensitivity", "max_sensitivity"]


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
        """Means of the absolute and relative max-sensitivity.

        Returns:
            ``{"max_sensitivity_mean": ..., "relative_mean": ...}``.
        """
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
