"""Objectives: small callables from layer activations to one score per batch item.

An objective knows which layers it reads (``.layers``) and maps ``{layer: activation}`` to a
tensor of shape ``[B]``. Objectives combine with ``+``, ``-`` and scalar ``*``::

    obj = channel("layer3", 7) - 0.05 * total_variation()
    obj = unit("dense_1", [3, 7, 32])   # row i of the batch maximizes unit [3, 7, 32][i]

Image regularizers read the image being optimized, which the algorithms pass under the key
``"input"``. ``batch=`` binds an objective to some batch rows: the other rows score 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

INPUT = "input"

Acts = dict[str, torch.Tensor]


class Objective:
    """A named function ``acts -> scores [B]`` that reads ``layers``.

    Objectives combine with ``+``, ``-``, unary ``-``, and ``*`` or ``/`` by a number; ``sum([...])`` works.

    Args:
        fn: maps ``{layer: activation}`` (the image under ``"input"``) to one score per batch row.
        layers: the layers ``fn`` reads (duplicates dropped, order kept).
        name: shown in ``repr`` and in error messages.
    """

    def __init__(self, fn: Callable[[Acts], torch.Tensor], layers: Sequence[str], name: str):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    @property
    def model_layers(self) -> tuple[str, ...]:
        """The layers to capture from the model (everything but the input image)."""
        return tuple(name for name in self.layers if name != INPUT)

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}")
        return Objective(lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}")

    def __radd__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # sum([...]) starts at 0
            return self
        return self + other

    def __sub__(self, other):
        return self + (-1.0) * other

    def __neg__(self):
        return (-1.0) * self

    def __mul__(self, scalar):
        if not isinstance(scalar, (int, float)):
            raise TypeError("objectives multiply with numbers only; combine objectives with + and -")
        return Objective(lambda a: scalar * self(a), self.layers, f"{scalar} * ({self.name})")

    __rmul__ = __mul__

    def __truediv__(self, scalar):
        return self * (1.0 / scalar)


def _bind(scores: torch.Tensor, batch: int | Sequence[int] | None) -> torch.Tensor:
    if batch is None:
        return scores
    rows = [batch] if isinstance(batch, int) else list(batch)
    mask = torch.zeros_like(scores)
    mask[rows] = 1.0
    return scores * mask


def _check_index(acts: torch.Tensor, layer: str, index: torch.Tensor) -> None:
    size = acts.shape[1]
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
        raise IndexError(f"unit index {index.tolist()} out of range: layer {layer!r} has {size} units (0..{size - 1})")


def _per_row(index, batch_size: int, device) -> torch.Tensor:
    idx = torch.as_tensor(index, dtype=torch.long, device=device).reshape(-1)
    if idx.numel() == 1:
        return idx.expand(batch_size)
    if idx.numel() != batch_size:
        raise ValueError(f"{idx.numel()} units for a batch of {batch_size}: give one unit per batch row")
    return idx


def unit(
    layer: str,
    index: int | Sequence[int],
    position: tuple[int, int] | None = None,
    batch: int | Sequence[int] | None = None,
) -> Objective:
    """One neuron: ``acts[:, index]`` of a Linear output; for conv outputs channel ``index`` at ``position``.

    A list gives row ``i`` the unit ``index[i]``. An index out of range raises an IndexError when the objective is
    evaluated.

    Args:
        layer: the layer name.
        index: the unit (channel) index, or one per batch row.
        position: ``(y, x)`` of a conv output; ``None``: the centre. Outputs of other ranks average over positions.
        batch: bind the objective to these batch rows (the other rows score 0); ``None``: every row.

    Returns:
        The objective.
    """

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        idx = _per_row(index, a.shape[0], a.device)
        _check_index(a, layer, idx)
        rows = torch.arange(a.shape[0], device=a.device)
        if a.dim() == 2:
            scores = a[rows, idx]
        elif a.dim() == 4:
            y, x = position if position is not None else (a.shape[2] // 2, a.shape[3] // 2)
            scores = a[rows, idx, y, x]
        else:
            scores = a.flatten(2)[rows, idx].mean(-1)
        return _bind(scores, batch)

    return Objective(fn, [layer], f"unit({layer}, {index})")


def channel(layer: str, index: int | Sequence[int], batch: int | Sequence[int] | None = None) -> Objective:
    """Mean activation of channel ``index`` over all positions (a Linear unit for 2-D outputs).

    Args:
        layer: the layer name.
        index: the channel index, or one per batch row.
        batch: bind the objective to these batch rows (the other rows score 0); ``None``: every row.

    Returns:
        The objective.
    """

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        idx = _per_row(index, a.shape[0], a.device)
        _check_index(a, layer, idx)
        rows = torch.arange(a.shape[0], device=a.device)
        picked = a[rows, idx]
        scores = picked if picked.dim() == 1 else picked.flatten(1).mean(1)
        return _bind(scores, batch)

    return Objective(fn, [layer], f"channel({layer}, {index})")


def layer_l2(layer: str, batch: int | Sequence[int] | None = None) -> Objective:
    """The DeepDream objective: the squared L2 norm of the layer's activations, summed over positions.

    Summed, so the score of an image split in tiles is the sum of the tiles' scores.

    Args:
        layer: the layer name.
        batch: bind the objective to these batch rows (the other rows score 0); ``None``: every row.

    Returns:
        The objective.
    """

    def fn(acts: Acts) -> torch.Tensor:
        return _bind(acts[layer].pow(2).flatten(1).sum(1), batch)

    return Objective(fn, [layer], f"layer_l2({layer})")


def direction(layer: str, vector: torch.Tensor, batch: int | Sequence[int] | None = None) -> Objective:
    """Dot product of the activation vector with ``vector`` (over channels), averaged over positions.

    A vector whose length is not the layer's channel count raises a ValueError when the objective is evaluated.

    Args:
        layer: the layer name.
        vector: one weight per channel.
        batch: bind the objective to these batch rows (the other rows score 0); ``None``: every row.

    Returns:
        The objective.
    """
    vector = torch.as_tensor(vector, dtype=torch.float32)

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        v = vector.to(a.device, a.dtype)
        if v.numel() != a.shape[1]:
            raise ValueError(f"direction has {v.numel()} entries but layer {layer!r} has {a.shape[1]} channels")
        v = v.reshape(1, -1, *([1] * (a.dim() - 2)))
        dots = (a * v).sum(1)
        return _bind(dots.flatten(1).mean(1) if dots.dim() > 1 else dots, batch)

    return Objective(fn, [layer], f"direction({layer})")


def diversity(layer: str) -> Objective:
    """Diversity term (as in Olah et al. 2017): minus the mean cosine similarity of the items' Gram matrices.

    Each item's Gram matrix (channel correlations) is compared with the other items' ones. Needs a batch of 2 or more
    (a single item scores 0).

    Args:
        layer: the layer name.

    Returns:
        The objective.
    """

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        b = a.shape[0]
        if b < 2:
            return torch.zeros(b, device=a.device, dtype=a.dtype)
        flat = a.flatten(2) if a.dim() > 2 else a.unsqueeze(-1)
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        gram = torch.nn.functional.normalize(gram, dim=1)
        sim = gram @ gram.T
        off_diagonal = sim.sum(1) - sim.diagonal()
        return -off_diagonal / (b - 1)

    return Objective(fn, [layer], f"diversity({layer})")


# Image regularizers: scores of the image under optimization (key "input"), per batch item.


def l1(constant: float = 0.0) -> Objective:
    """Mean absolute deviation of the pixels from ``constant``.

    Args:
        constant: the reference value.

    Returns:
        The objective (it reads the image, ``"input"``).
    """
    return Objective(lambda a: (a[INPUT] - constant).abs().flatten(1).mean(1), [INPUT], "l1")


def l2(constant: float = 0.0) -> Objective:
    """Root mean square deviation of the pixels from ``constant``.

    Args:
        constant: the reference value.

    Returns:
        The objective (it reads the image, ``"input"``).
    """
    return Objective(lambda a: (a[INPUT] - constant).pow(2).flatten(1).mean(1).add(1e-12).sqrt(), [INPUT], "l2")


def alpha_norm(alpha: float = 6.0) -> Objective:
    """Mahendran & Vedaldi's alpha-norm of the mean-centred image: the mean of ``|x - mean(x)|^alpha``.

    Args:
        alpha: the exponent.

    Returns:
        The objective (it reads the image, ``"input"``).
    """

    def fn(a: Acts) -> torch.Tensor:
        x = a[INPUT]
        centred = x - x.mean(dim=(-2, -1), keepdim=True)
        return centred.abs().pow(alpha).flatten(1).mean(1)

    return Objective(fn, [INPUT], f"alpha_norm({alpha})")


def total_variation(beta: float = 2.0) -> Objective:
    """Total variation ``TV^beta`` (Mahendran & Vedaldi): mean of ``(dx^2 + dy^2)^(beta/2)``.

    Args:
        beta: the exponent.

    Returns:
        The objective (it reads the image, ``"input"``).
    """

    def fn(a: Acts) -> torch.Tensor:
        x = a[INPUT]
        dx = x[..., :-1, 1:] - x[..., :-1, :-1]
        dy = x[..., 1:, :-1] - x[..., :-1, :-1]
        return (dx.pow(2) + dy.pow(2)).add(1e-12).pow(beta / 2).flatten(1).mean(1)

    return Objective(fn, [INPUT], f"total_variation({beta})")


def as_objective(obj: Objective | str) -> Objective:
    """An objective from the shorthand users type.

    ``"layer3"`` is DeepDream's ``layer_l2("layer3")``; ``"layer3:7"`` (Lucent's shorthand) is
    ``channel("layer3", 7)``; an :class:`Objective` is returned as it is.

    Args:
        obj: an objective or a string.

    Returns:
        The objective.

    >>> as_objective("layer3:7").name
    'channel(layer3, 7)'
    >>> as_objective("dense_1").name
    'layer_l2(dense_1)'
    """
    if not isinstance(obj, str):
        return obj
    layer, sep, index = obj.rpartition(":")
    if sep and index.strip().isdigit():
        return channel(layer, int(index))
    return layer_l2(obj)
