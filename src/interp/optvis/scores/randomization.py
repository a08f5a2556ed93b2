"""Randomization: cascading model-parameter randomization from the top (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp.optvis.capture import Capture, frozen, model_device
from interp.optvis.scores.common import Explain, _nanmean, spearman_rows

__all__ = ["ParameterRandomization", "model_parameter_randomization", "randomizable_layers"]


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
        """Mean similarity after the first step, averaged over the steps, and with every layer randomized.

        Returns:
            ``{"first_mean", "average_mean", "last_mean"}`` (``nan`` entries left out; all ``nan`` without steps).
        """
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
