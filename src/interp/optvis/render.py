"""Unit optimization (activation maximization): ``render`` and ``render_units``.

::

    from interp.optvis import render, render_units, objectives as obj
    result = render(model, obj.channel("layer3", 7), steps=256)
    result.images[-1]                # [1, 3, H, W] in [0, 1]
    many = render_units(model, "dense_1", units=range(64))   # one batched run, row i = unit i
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.capture import Capture, expected_input_shape, frozen, model_device
from interp.optvis.param import image, unit_seeds
from interp.optvis.progress import progress as progress_iter
from interp.optvis.transforms import default_transforms


@dataclass
class Rendering:
    """What ``render`` returns.

    Attributes:
        images: the images after each threshold step, each [B, C, H, W] on the CPU, in [0, 1].
        thresholds: the steps at which ``images`` were taken.
        history: objective per step and batch row, [steps, B] (on the transformed images).
        scores: the objective of the final images without transforms, [B].
        units, activations: for ``render_units``, the unit of each row and the activation the
            final image achieves for it (without the regularizer), [B].
    """

    images: list[torch.Tensor]
    thresholds: list[int]
    history: torch.Tensor
    scores: torch.Tensor
    units: list[int] | None = field(default=None)
    activations: torch.Tensor | None = field(default=None)

    @property
    def image(self) -> torch.Tensor:
        """The final images, [B, C, H, W]."""
        return self.images[-1]


def _resolve_shape(model: nn.Module, shape, batch: int) -> tuple[int, int, int, int]:
    if shape is None:
        shape = expected_input_shape(model)
        if shape is None:
            raise ValueError(
                "cannot tell the input shape of this model: pass shape=(C, H, W) or set model.example_input_array"
            )
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = (batch, *shape)
    return shape


def render(
    model: nn.Module,
    objective: obj.Objective | str,
    param: nn.Module | None = None,
    transforms: Callable | str | None = "default",
    steps: int = 256,
    lr: float = 0.05,
    thresholds: Sequence[int] | None = None,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    batch: int = 1,
    optimizer: Callable | None = None,
    progress: bool = False,
) -> Rendering:
    """Optimize an image so that ``objective`` is as large as possible.

    Args:
        model: any ``nn.Module`` taking images in [0, 1]; it runs on its own device, in eval mode,
            without weight gradients, and only up to the deepest layer the objective reads.
        objective: an :class:`~interp.optvis.objectives.Objective` (or a layer name: DeepDream's
            ``layer_l2``).
        param: an image parameterization (``param.image(...)``); default the Fourier,
            colour-decorrelated one of ``shape``.
        transforms: ``"default"`` (chosen by image size), ``None``, or a callable
            ``(x, generator) -> x``.
        steps, lr: Adam steps and learning rate (Lucent's defaults: 512 steps at 0.05; 256 is enough
            for most units here).
        thresholds: steps at which to keep the images (default: the last step).
        seed: seeds the parameterization and the transforms; the same seed gives the same
            images on CPU.
        shape: (C, H, W) or (B, C, H, W); default from ``model.example_input_array``.
        batch: batch size when ``shape`` has no batch dimension.
        optimizer: ``params -> torch.optim.Optimizer``; default Adam(lr).
        progress: show a tqdm bar.

    Returns:
        The images at each threshold, the objective per step and the final scores (CPU).

    Raises:
        ValueError: ``steps < 1``, thresholds outside ``1..steps``, an unknown ``transforms`` string, or no
            ``shape`` (given or declared by the model) without ``param``.
        FloatingPointError: the objective stops being finite.
    """
    objective = obj.as_objective(objective)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    thresholds = sorted(set(thresholds)) if thresholds else [steps]
    if thresholds[-1] > steps or thresholds[0] < 1:
        raise ValueError(f"thresholds must lie in 1..{steps}, got {thresholds}")
    device = model_device(model)
    if param is None:
        param = image(_resolve_shape(model, shape, batch), seed=seed)
    param = param.to(device)
    if isinstance(transforms, str):
        if transforms != "default":
            raise ValueError(f"transforms must be 'default', None or a callable, got {transforms!r}")
        transforms = default_transforms(param().shape)
    generator = torch.Generator().manual_seed(seed)
    opt = optimizer(param.parameters()) if optimizer else torch.optim.Adam(param.parameters(), lr=lr)
    layers = objective.model_layers

    images, history = [], []
    with frozen(model), Capture(model, layers) as cap:
        for step in progress_iter(range(1, steps + 1), progress, "render"):
            opt.zero_grad(set_to_none=True)
            img = param()
            x = transforms(img, generator) if transforms is not None else img
            acts = cap(x) if layers else {}
            acts[obj.INPUT] = img
            scores = objective(acts)
            if not torch.isfinite(scores).all():
                raise FloatingPointError(
                    f"objective {objective.name} became {scores.detach().cpu().tolist()} at step {step}: "
                    "lower lr or add a regularizer"
                )
            (-scores.sum()).backward()
            opt.step()
            history.append(scores.detach())
            if step in thresholds:
                with torch.no_grad():
                    images.append(param().detach().cpu())
        with torch.no_grad():
            final = param()
            acts = cap(final) if layers else {}
            acts[obj.INPUT] = final
            final_scores = objective(acts).detach().cpu()
    return Rendering(images, list(thresholds), torch.stack(history).cpu(), final_scores)


def render_units(
    model: nn.Module,
    layer: str,
    units: Sequence[int] | range,
    kind: str = "channel",
    regularizer: obj.Objective | None = None,
    **kwargs: Any,
) -> Rendering:
    """Visualize many units of one layer in one batched optimization: row ``i`` maximizes ``units[i]``.

    One parameter tensor, one optimizer, one forward pass per step. The default parameterization seeds each row from
    (``seed``, unit), and the transforms draw from ``seed`` alone, so on the CPU a unit's image is the same bits
    whichever other units share its batch (or DDP rank).

    Args:
        model: any ``nn.Module`` taking images in [0, 1].
        layer: the units' layer.
        units: the unit (channel) indices, one per batch row.
        kind: ``"channel"`` (mean over positions; a neuron for Linear layers) or ``"unit"`` (conv: the centre
            position).
        regularizer: added to every row's objective (e.g. ``-1e-3 * total_variation()``).
        **kwargs: passed to :func:`render` (``shape`` without a batch dimension: the batch is the units).

    Returns:
        The rendering, with ``units`` and the ``activations`` each final image achieves for its unit (without the
        regularizer).

    Raises:
        ValueError: no units, an unknown ``kind``, or what :func:`render` raises.
    """
    units = [int(u) for u in units]
    if not units:
        raise ValueError("render_units needs at least one unit")
    makers: dict[str, Callable[[str, list[int]], obj.Objective]] = {"channel": obj.channel, "unit": obj.unit}
    make = makers.get(kind)
    if make is None:
        raise ValueError(f"kind must be 'channel' or 'unit', got {kind!r}")
    target = make(layer, units)
    if regularizer is not None:
        target = target + regularizer
    kwargs["batch"] = len(units)
    if kwargs.get("param") is None:
        # one seed per unit: a unit's image does not depend on the other units of the batch
        shape = _resolve_shape(model, kwargs.pop("shape", None), len(units))
        kwargs["param"] = image(shape, seed=unit_seeds(kwargs.get("seed", 0), units))
    result = render(model, target, **kwargs)
    result.units = units
    if regularizer is None:
        result.activations = result.scores.clone()  # the final scoring pass already measured them
    else:
        with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
            result.activations = make(layer, units)(cap(result.image.to(model_device(model)))).cpu()
    return result
