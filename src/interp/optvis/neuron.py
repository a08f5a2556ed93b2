"""Position-aware objectives for conv channels, and a trust region that widens per unit.

A conv channel is a feature detector replicated over positions; its top dataset examples are
ranked by the *maximum* over positions (``mine_topk(spatial="max")``), at the position where the
feature sits in each example. :func:`objectives.channel` maximizes the *mean* over positions
instead: the optimum tiles the feature everywhere, which for 28 px digits reads as texture rather
than as a digit. Lucid's ``neuron`` objective optimizes one position; here:

* :func:`peak_positions`: where a channel's top examples peak (the modal argmax position);
* :func:`neuron`: channel ``units[i]`` at ``positions[i]`` for batch row ``i``;
* :func:`spatial_max`: the maximum over positions (optionally a soft maximum), the statistic the
  top-k is ranked by;
* :func:`shift`, :func:`aligned_mean` and :func:`accentuate_prototypes`: the mean of a channel's
  top examples after shifting each so that its peak lands on the channel's modal peak (a sharp
  prototype of what the channel sees), then accentuated (:func:`~interp.optvis.accentuate.accentuate`)
  with the neuron objective at that peak: a synthetic, digit-like image that excites the channel
  more than its 16th-best example (benchmarks/conv_legibility.py); the ``prototype`` view of
  :func:`interp.steps.feature_visualization`;
* :class:`WideningLatentParam` and :func:`render_widening`: the prior view
  (:class:`~interp.optvis.latent.LatentParam` started at the mean code of each unit's top examples)
  with a trust radius per row that grows on a ladder until the row's activation reaches a target
  (e.g. the unit's 16th-best dataset activation), and then holds: each unit gets the smallest
  departure from its examples' mean code that excites it like its examples do.

Pure torch::

    from interp.optvis.neuron import neuron, peak_positions, render_widening
    pos = peak_positions(top.positions)                         # top = mine_topk(..., spatial="max")
    objective = neuron("conv2", units, pos)
    result = render_widening(model, objective, decoder, starts, targets=top.values[:, 15])
    # the prototype view: examples [U, K, C, H, W] (the top-k images of each unit)
    acc = accentuate_prototypes(model, "conv2", units, examples, top.positions)
    acc.image                                                   # [U, C, H, W]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.accentuate import Accentuation, accentuate
from interp.optvis.capture import Capture, expected_input_shape, frozen, model_device
from interp.optvis.latent import LatentParam
from interp.optvis.param import FourierBasis, Seeds
from interp.optvis.receptive import receptive_field
from interp.optvis.render import Rendering, render

__all__ = [
    "WideningLatentParam",
    "accentuate_prototypes",
    "aligned_mean",
    "capped",
    "neuron",
    "dark_image",
    "OffsetImage",
    "peak_positions",
    "render_widening",
    "shift",
    "spatial_max",
]

DEFAULT_LADDER = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def peak_positions(positions: torch.Tensor, k: int | None = None, how: str = "mode") -> torch.Tensor:
    """One ``(y, x)`` per unit from the argmax positions of its top examples.

    Args:
        positions: ``[U, K, 2]`` (``TopK.positions`` of ``mine_topk(spatial="max")``).
        k: use the first ``k`` examples (default all).
        how: ``"mode"``, the most frequent position (ties: the one that comes first in the
            examples' order, i.e. the best example's); ``"mean"``, the rounded mean position.

    Returns:
        ``[U, 2]`` long tensor: one (y, x) per unit.

    Raises:
        ValueError: ``positions`` is not ``[U, K, 2]``, or ``how`` is neither ``"mode"`` nor ``"mean"``.

    >>> pos = torch.tensor([[[2, 3], [2, 3], [5, 5]], [[1, 1], [3, 3], [3, 3]]])
    >>> peak_positions(pos).tolist()
    [[2, 3], [3, 3]]
    >>> peak_positions(pos, how="mean").tolist()
    [[3, 4], [2, 2]]
    """
    if positions.dim() != 3 or positions.shape[-1] != 2:
        raise ValueError(f"positions must be [U, K, 2], got {tuple(positions.shape)}")
    if k is not None:
        positions = positions[:, :k]
    if how == "mean":
        return positions.float().mean(1).round().long()
    if how != "mode":
        raise ValueError(f"how must be 'mode' or 'mean', got {how!r}")
    out = []
    for rows in positions.long():
        keys = [tuple(p) for p in rows.tolist()]
        counts: dict[tuple[int, int], int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        best = max(counts.values())
        out.append(next(key for key in keys if counts[key] == best))
    return torch.tensor(out, dtype=torch.long)


def _picked(a: torch.Tensor, layer: str, units: Sequence[int] | torch.Tensor) -> torch.Tensor:
    idx = torch.as_tensor(units, dtype=torch.long, device=a.device).reshape(-1)
    if idx.numel() == 1:
        idx = idx.expand(a.shape[0])
    if idx.numel() != a.shape[0]:
        raise ValueError(f"{idx.numel()} units for a batch of {a.shape[0]}: give one unit per batch row")
    if a.dim() != 4:
        raise ValueError(f"layer {layer!r} gives {tuple(a.shape)}: position objectives need conv outputs [B, C, H, W]")
    if int(idx.min()) < 0 or int(idx.max()) >= a.shape[1]:
        raise IndexError(f"unit index out of range: layer {layer!r} has {a.shape[1]} channels")
    return a[torch.arange(a.shape[0], device=a.device), idx]  # [B, H, W]


def neuron(
    layer: str, units: Sequence[int] | torch.Tensor, positions: Sequence[Sequence[int]] | torch.Tensor
) -> obj.Objective:
    """Row ``i``: channel ``units[i]`` of ``layer`` at position ``positions[i]`` = (y, x) (Lucid's
    ``neuron`` objective, one position per row).

    Args:
        layer: a conv layer (output ``[B, C, H, W]``).
        units: one channel per batch row, or one channel for every row.
        positions: one ``(y, x)`` per batch row (``[B, 2]``), or one for every row.

    Returns:
        An :class:`~interp.optvis.objectives.Objective` with one score per row. Evaluating it raises
        ``ValueError`` when the units or positions do not match the batch or the layer's output is not
        ``[B, C, H, W]``, and ``IndexError`` for a channel out of range.
    """
    pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1, 2)

    def fn(acts: obj.Acts) -> torch.Tensor:
        maps = _picked(acts[layer], layer, units)
        p = pos.to(maps.device)
        if len(p) == 1:
            p = p.expand(maps.shape[0], 2)
        if len(p) != maps.shape[0]:
            raise ValueError(f"{len(p)} positions for a batch of {maps.shape[0]}")
        return maps[torch.arange(maps.shape[0], device=maps.device), p[:, 0], p[:, 1]]

    return obj.Objective(fn, [layer], f"neuron({layer})")


def spatial_max(layer: str, units: Sequence[int] | torch.Tensor, temperature: float = 0.0) -> obj.Objective:
    """Row ``i``: the maximum over positions of channel ``units[i]``; ``temperature > 0`` gives the
    soft maximum ``t * logsumexp(a / t)`` (gradient to every position near the top).

    Args:
        layer: a conv layer (output ``[B, C, H, W]``).
        units: one channel per batch row, or one channel for every row.
        temperature: 0 for the hard maximum; ``t > 0`` for the soft maximum at that temperature.

    Returns:
        An :class:`~interp.optvis.objectives.Objective` with one score per row (evaluating it raises as
        :func:`neuron`'s does).
    """

    def fn(acts: obj.Acts) -> torch.Tensor:
        flat = _picked(acts[layer], layer, units).flatten(1)
        if temperature > 0:
            return temperature * torch.logsumexp(flat / temperature, dim=1)
        return flat.amax(1)

    return obj.Objective(fn, [layer], f"spatial_max({layer})")


def capped(objective: obj.Objective, caps: torch.Tensor) -> obj.Objective:
    """``min(objective, caps)`` per row: no gradient once a row reaches its cap, so the image stops
    moving away from where it started.

    Args:
        objective: the objective to cap.
        caps: one cap per batch row (``[B]``).

    Returns:
        The capped :class:`~interp.optvis.objectives.Objective`, on the same layers.
    """

    def fn(acts: obj.Acts) -> torch.Tensor:
        scores = objective(acts)
        return torch.minimum(scores, caps.to(scores.device, scores.dtype))

    return obj.Objective(fn, objective.layers, f"capped({objective.name})")


class WideningLatentParam(LatentParam):
    """:class:`LatentParam` whose ball around ``start`` has one radius per row, taken from
    ``ladder``: :meth:`widen` moves the rows that have not reached their target one rung up.

    ``max_norm`` (the ball around the origin) still applies; ``ladder`` defaults to
    :data:`DEFAULT_LADDER` (1 to 8 for 16 latent dimensions, whose codes have norm about 4).

    Args:
        decoder: the generator's decoder, from ``[B, latent_dim]`` codes to images (as for
            :class:`LatentParam`).
        start: ``[batch, latent_dim]`` codes the rows start at and stay near; its first dimension
            is the batch.
        ladder: the radii of the ball around ``start``, increasing and positive; every row starts
            on the first.
        max_norm: the radius of the ball around the origin (``None``:
            :func:`~interp.optvis.latent.default_max_norm`).
        latent_dim: size of the codes (default ``decoder.latent_dim``).

    Raises:
        ValueError: ``ladder`` is empty, not increasing or has a non-positive radius (or
            :class:`LatentParam` rejects the other arguments).
    """

    rung: torch.Tensor
    ladder_t: torch.Tensor

    def __init__(
        self,
        decoder: nn.Module,
        start: torch.Tensor,
        ladder: Sequence[float] = DEFAULT_LADDER,
        max_norm: float | None = None,
        latent_dim: int | None = None,
    ):
        ladder = [float(r) for r in ladder]
        if not ladder or any(r <= 0 for r in ladder) or sorted(ladder) != ladder:
            raise ValueError(f"ladder must be increasing positive radii, got {ladder}")
        self._ready = False
        super().__init__(
            decoder,
            batch=int(start.shape[0]),
            latent_dim=latent_dim,
            max_norm=max_norm,
            start=start,
            radius=ladder[-1],
        )
        self.register_buffer("ladder_t", torch.tensor(ladder))
        self.register_buffer("rung", torch.zeros(self.batch, dtype=torch.long))
        self._ready = True
        with torch.no_grad():
            self.z.copy_(self._project(self.z))

    @property
    def radii(self) -> torch.Tensor:
        """The current radius of each row, [batch]."""
        return self.ladder_t[self.rung]

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        if not getattr(self, "_ready", False) or self.start is None:
            return super()._project(z)
        start = self.start.to(z.device)
        step = z - start
        norm = step.norm(dim=1, keepdim=True).clamp(min=1e-12)
        z = start + step * (self.radii.to(z.device, z.dtype)[:, None] / norm).clamp(max=1.0)
        norm = z.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return z * (self.max_norm / norm).clamp(max=1.0)

    @torch.no_grad()
    def widen(self, reached: torch.Tensor) -> bool:
        """One rung up for every row where ``reached`` [batch] is False (and a rung is left);
        returns whether any row moved.

        Args:
            reached: ``[batch]`` booleans, True for the rows that reached their target.

        Returns:
            Whether any row moved up a rung.
        """
        grow = (~reached.to(self.rung.device).bool()) & (self.rung < len(self.ladder_t) - 1)
        self.rung += grow.long()
        return bool(grow.any())


def render_widening(
    model: nn.Module,
    objective: obj.Objective,
    decoder: nn.Module,
    starts: torch.Tensor,
    targets: torch.Tensor,
    *,
    ladder: Sequence[float] = DEFAULT_LADDER,
    steps_per_rung: int = 48,
    final_steps: int = 0,
    lr: float = 0.05,
    cap: float | None = None,
    max_norm: float | None = None,
    measure: obj.Objective | None = None,
) -> tuple[Rendering, torch.Tensor]:
    """The prior view with a per-row trust region that widens until ``targets`` are reached.

    Starting at ``starts`` (e.g. :func:`~interp.optvis.latent.mean_codes` of each unit's top
    examples), it optimizes ``objective`` for ``steps_per_rung`` Adam steps at the first radius of
    ``ladder``; rows whose ``measure`` (default ``objective``) is still below ``targets`` then
    move one rung up, and so on until every row has reached its target or the top rung, plus
    ``final_steps`` more. Adam's state carries over between rungs. ``cap`` (a factor, e.g. 1.1)
    stops pushing a row once the objective exceeds ``cap * target`` (:func:`capped`).

    Returns the rendering (``images`` holds the image at the end of each stage) and the radius
    each row ended with, [batch].

    Args:
        model: the network.
        objective: what to maximize, one score per row.
        decoder: the generator's decoder (as for :class:`WideningLatentParam`).
        starts: ``[batch, latent_dim]`` starting codes, one row per unit.
        targets: ``[batch]`` the activation each row should reach (e.g. the unit's 16th-best
            dataset activation).
        ladder: the trust radii around ``starts``, increasing.
        steps_per_rung: Adam steps at each rung.
        final_steps: Adam steps after the last widening.
        lr: Adam's learning rate.
        cap: a factor: a row's objective is capped at ``cap * target`` (None: uncapped).
        max_norm: the radius of the ball around the origin (None: the default of
            :class:`LatentParam`).
        measure: what is compared with ``targets`` after each rung (default ``objective``).

    Returns:
        ``(rendering, radii)``: the :class:`~interp.optvis.render.Rendering` (its ``scores`` are
        ``objective`` at the end) and the final radius of each row, [batch] on the CPU.
    """
    targets = torch.as_tensor(targets, dtype=torch.float32).reshape(-1).cpu()
    view = WideningLatentParam(decoder, starts, ladder=ladder, max_norm=max_norm)
    view = view.to(model_device(model))
    goal = objective if cap is None else capped(objective, targets * float(cap))
    check = measure if measure is not None else objective
    opt = torch.optim.Adam(view.parameters(), lr=lr)
    images, histories, thresholds = [], [], []
    done = 0
    for _stage in range(len(ladder)):
        part = render(model, goal, param=view, transforms=None, steps=steps_per_rung, optimizer=lambda _p: opt)
        done += steps_per_rung
        images.append(part.image)
        histories.append(part.history)
        thresholds.append(done)
        with frozen(model), Capture(model, check.model_layers) as cap_, torch.no_grad():
            x = view()
            acts = cap_(x)
            acts[obj.INPUT] = x
            reached = check(acts).cpu() >= targets
        if not view.widen(reached):
            break
    if final_steps > 0:
        part = render(model, goal, param=view, transforms=None, steps=final_steps, optimizer=lambda _p: opt)
        done += final_steps
        images.append(part.image)
        histories.append(part.history)
        thresholds.append(done)
    with frozen(model), Capture(model, objective.model_layers) as cap_, torch.no_grad():
        x = view()
        acts = cap_(x)
        acts[obj.INPUT] = x
        scores = objective(acts).cpu()
    rendering = Rendering(images, thresholds, torch.cat(histories), scores)
    return rendering, view.radii.cpu()


def shift(images: torch.Tensor, dy: int, dx: int, fill: float = 0.0) -> torch.Tensor:
    """``images`` [..., H, W] moved down by ``dy`` and right by ``dx`` pixels (negative: up/left),
    ``fill`` where nothing moves in.

    Args:
        images: ``[..., H, W]`` tensor.
        dy: pixels down (negative: up).
        dx: pixels right (negative: left).
        fill: the value of the pixels nothing moves into.

    Returns:
        A new tensor shaped like ``images`` (all ``fill`` when the shift is a whole side or more).

    >>> shift(torch.arange(4.0).reshape(1, 4), 0, 1).tolist()
    [[0.0, 0.0, 1.0, 2.0]]
    """
    h, w = images.shape[-2:]
    out = torch.full_like(images, fill)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = images[..., src_y, src_x]
    return out


def aligned_mean(
    examples: torch.Tensor,
    positions: torch.Tensor,
    stride: Sequence[int] | int,
    target: torch.Tensor | None = None,
    fill: float = 0.0,
) -> torch.Tensor:
    """Per unit, the mean of its examples after shifting each by ``stride * (target - position)``
    input pixels, so that every example's peak lands on ``target`` (default
    :func:`peak_positions`).

    Args:
        examples: ``[U, K, C, H, W]`` images (uint8 or floats in [0, 1]).
        positions: ``[U, K, 2]`` (y, x) of each example's peak on the layer's grid
            (``TopK.positions``).
        stride: input pixels between neighbouring positions of the layer
            (``receptive_field(model, layer).stride``; 2 for the MNIST CNN's ``conv2``).
        target: ``[U, 2]`` where the peaks go.
        fill: the value of the pixels a shift leaves empty.

    Returns:
        ``[U, C, H, W]`` floats.

    Raises:
        ValueError: ``examples`` is not ``[U, K, C, H, W]``.
    """
    if examples.dim() != 5:
        raise ValueError(f"examples must be [U, K, C, H, W], got {tuple(examples.shape)}")
    if examples.dtype == torch.uint8:
        examples = examples.float() / 255.0
    sy, sx = (int(stride), int(stride)) if isinstance(stride, int) else (int(stride[0]), int(stride[1]))
    k = examples.shape[1]
    positions = positions[:, :k].long()
    if target is None:
        target = peak_positions(positions)
    moves = (target.long()[:, None, :] - positions) * torch.tensor([sy, sx])
    out = torch.empty_like(examples)
    for u in range(examples.shape[0]):
        for j in range(k):
            dy, dx = (int(v) for v in moves[u, j])
            out[u, j] = shift(examples[u, j].float(), dy, dx, fill)
    return out.mean(1)


def accentuate_prototypes(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    examples: torch.Tensor,
    positions: torch.Tensor,
    *,
    objective: str = "neuron",
    stride: Sequence[int] | int | None = None,
    steps: int = 128,
    lr: float = 0.02,
    reg_weight: float = 30.0,
    decay_power: float = 1.5,
    **kwargs,
) -> Accentuation:
    """The prototype view of conv channels: :func:`aligned_mean` of each unit's top examples,
    accentuated for the unit (:func:`~interp.optvis.accentuate.accentuate`, held close at the
    model's first layer) with :func:`neuron` at the modal peak (``objective="neuron"``) or
    :func:`spatial_max` (``"max"``). Row ``i`` is ``units[i]``; ``examples`` [U, K, C, H, W] and
    ``positions`` [U, K, 2] come from ``mine_topk(spatial="max")``. ``stride`` defaults to the
    layer's (:func:`~interp.optvis.receptive.receptive_field`). Returns the
    :class:`~interp.optvis.accentuate.Accentuation` (its ``seed_images`` are the prototypes).

    Args:
        model: the network.
        layer: a conv layer.
        units: the channels, one per row.
        examples: ``[U, K, C, H, W]`` top examples of each unit (uint8 or floats in [0, 1]).
        positions: ``[U, K, 2]`` (y, x) of each example's peak on the layer's grid.
        objective: ``"neuron"`` (at the modal peak) or ``"max"`` (the spatial maximum).
        stride: input pixels between neighbouring positions of the layer (default the layer's).
        steps: Adam steps of the accentuation.
        lr: its learning rate.
        reg_weight: weight of the distance to the prototype at the model's first layer.
        decay_power: the 1/f power of the accentuation's offset.
        kwargs: passed to :func:`~interp.optvis.accentuate.accentuate`.

    Returns:
        The :class:`~interp.optvis.accentuate.Accentuation`, row ``i`` for ``units[i]``.

    Raises:
        ValueError: ``objective`` is neither ``"neuron"`` nor ``"max"``, or ``examples`` is not
            ``[U, K, C, H, W]``.
    """
    units = [int(u) for u in units]
    if stride is None:
        shape = tuple(examples.shape[2:]) if examples.dim() == 5 else expected_input_shape(model)
        stride = receptive_field(model, layer, shape).stride
    target = peak_positions(positions)
    seeds = aligned_mean(examples, positions, stride, target)
    if objective == "neuron":
        goal = neuron(layer, units, target)
    elif objective == "max":
        goal = spatial_max(layer, units)
    else:
        raise ValueError(f"objective must be 'neuron' or 'max', got {objective!r}")
    return accentuate(
        model, goal, seeds.clamp(0, 1), steps=steps, lr=lr, reg_weight=reg_weight, decay_power=decay_power, **kwargs
    )


class OffsetImage(nn.Module):
    """``sigmoid(basis() + offset)``: a parameterization whose images start at ``sigmoid(offset)``
    (``offset=-2``: about 0.12, near the black background of MNIST digits) instead of mid-grey.

    Args:
        basis: a module that takes no input and returns the pre-sigmoid images; its ``shape``
            attribute is the images' (e.g. :class:`~interp.optvis.param.FourierBasis`).
        offset: added before the sigmoid.

    >>> from interp.optvis.param import FourierBasis
    >>> img = OffsetImage(FourierBasis((2, 1, 8, 8), sd=0.0), offset=-2.0)()
    >>> round(float(img.detach().mean()), 3)
    0.119
    """

    def __init__(self, basis: nn.Module, offset: float = -2.0):
        super().__init__()
        self.basis = basis
        self.offset = float(offset)
        self.shape = tuple(basis.shape)  # type: ignore[arg-type]

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.basis() + self.offset)


def dark_image(
    shape: Sequence[int], decay_power: float = 1.5, offset: float = -2.0, sd: float = 0.01, seed: Seeds = 0
) -> OffsetImage:
    """The plain view's parameterization for small grey digits: a Fourier basis with a steeper
    ``1/f^decay_power`` spectrum than natural photos' (fewer isolated pixels) and a dark start
    (:class:`OffsetImage`). ``seed`` as for :func:`~interp.optvis.param.image` (one per row).

    Args:
        shape: ``(B, C, H, W)``, or ``(C, H, W)`` for one image.
        decay_power: the power of the ``1/f`` spectrum.
        offset: added before the sigmoid (-2: images start near 0.12).
        sd: standard deviation of the initial spectrum.
        seed: one seed, or one per row.

    Returns:
        The :class:`OffsetImage` parameterization.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = (1, *shape)
    return OffsetImage(FourierBasis(shape, sd=sd, decay_power=decay_power, seed=seed), offset)  # type: ignore[arg-type]
