"""Complexity: sparseness (Chalasani et al. 2020), the Gini index of a map's magnitudes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.optvis.scores.common import _nanmean, _nanstd, gini

__all__ = ["Sparseness", "sparseness"]


@dataclass
class Sparseness:
    """What :func:`sparseness` returns.

    Attributes:
        gini: ``[U, N]``, the Gini index of each map's magnitudes (0: flat, towards 1: concentrated).
    """

    gini: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of the Gini index.

        Returns:
            ``{"gini_mean": ..., "gini_std": ...}``.
        """
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
