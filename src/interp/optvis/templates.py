"""Weight templates of first layers, and a diverging colormap to show signed maps.

A linear layer that reads the flattened image directly (MnistMLP's ``dense_1``) computes
``w_u . x + b_u``: its weight row ``w_u``, reshaped to the image, is the template the unit matches,
the exact counterpart of feature visualization for that layer. Signed maps (templates,
attributions) are shown with :func:`diverging_colormap`: blue negative, white zero, red positive,
on a scale symmetric around zero, with :func:`colorbar` as legend.

Example::

    >>> from interp.models.mlp import MnistMLP
    >>> t = weight_template(MnistMLP(), "dense_1", [32, 33])
    >>> t.shape, diverging_colormap(t).shape
    (torch.Size([2, 1, 28, 28]), torch.Size([2, 3, 28, 28]))

Pure torch: nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from interp.optvis.capture import expected_input_shape, get_layer, model_device
from interp.optvis.receptive import POINTWISE, _probe_pointwise, _trace_chain

NEGATIVE = (0.13, 0.40, 0.67)  # blue of the -vmax end
POSITIVE = (0.70, 0.09, 0.17)  # red of the +vmax end


def _units(units, n: int) -> list[int]:
    if units is None:
        return list(range(n))
    if isinstance(units, int):
        units = [units]
    units = [int(u) for u in units]
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ValueError(f"units {bad} out of range: the layer has {n} units")
    return units


def weight_template(
    model: nn.Module,
    layer: str,
    units: int | Sequence[int] | None = None,
    input_shape: Sequence[int] | None = None,
    space: str = "weights",
) -> torch.Tensor:
    """The weights of a linear layer that reads the (flattened) input, as images ``[U, C, H, W]``.

    Args:
        model: the model; ``layer`` must be an ``nn.Linear`` whose input is the model's input,
            flattened, after modules that act on each pixel alone (the model's normalization).
        layer: the layer's name (e.g. ``dense_1``).
        units: a unit, a list of units, or ``None`` for all.
        input_shape: (C, H, W); default from ``model.example_input_array``.
        space: ``"weights"`` (default): the raw weight rows, reshaped. They act on the *normalized*
            input: for MnistMLP, ``dense_1(x) = W (x - mean) / std + b``, and with one mean and std
            for all pixels the raw row is the image-space template times ``1 / std`` (same picture,
            other scale). ``"image"``: the gradient of each unit with respect to the image in
            [0, 1] (at a mid-gray image), i.e. the template the unit applies to the pixels as the
            user sees them, normalization included (exact when that normalization is affine).

    Returns:
        The templates, ``[U, C, H, W]`` on the model's device, one per unit in the order asked for.

    Raises:
        ValueError: the layer is not a linear layer reading the input directly (a hidden layer, a
            convolution, a layer behind anything that mixes pixels), or an unknown ``space``.
    """
    if space not in ("weights", "image"):
        raise ValueError(f"space must be 'weights' or 'image', got {space!r}")
    module = get_layer(model, layer)
    if input_shape is None:
        input_shape = expected_input_shape(model)
        if input_shape is None:
            raise ValueError("give input_shape (C, H, W): the model declares no example_input_array")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {shape}")
    if not isinstance(module, nn.Linear):
        raise ValueError(
            f"{layer!r} is a {type(module).__name__}, not an nn.Linear reading the input: "
            "weight templates exist only for a first, fully connected layer"
        )
    numel = shape[0] * shape[1] * shape[2]
    if module.in_features != numel:
        raise ValueError(
            f"{layer!r} reads {module.in_features} features, not the {numel} pixels of a "
            f"{shape} input: it does not read the input directly"
        )
    was_training = model.training
    model.eval()
    try:
        x = torch.full((1, *shape), 0.5, device=model_device(model), dtype=module.weight.dtype)
        chain, _ = _trace_chain(model, layer, x)
        if chain is None:
            raise ValueError(
                f"{layer!r} does not read the model's input directly (the path to it is not "
                "a chain of modules, or something else happens in between)"
            )
        for name, m, inp in chain[:-1]:
            if not (isinstance(m, (nn.Flatten, *POINTWISE)) or _probe_pointwise(m, inp)):
                raise ValueError(
                    f"{layer!r} does not read the input directly: {name!r} "
                    f"({type(m).__name__}) comes before it and mixes pixels"
                )
        if chain[-1][1] is not module:
            raise ValueError(f"{layer!r} does not read the input directly")
        idx = _units(units, module.out_features)
        if space == "weights":
            return module.weight.detach()[idx].reshape(len(idx), *shape).clone()
        rows = []
        for u in idx:
            xg = x.clone().requires_grad_(True)
            out = _linear_output(model, module, xg)
            (g,) = torch.autograd.grad(out[0, u], xg)
            rows.append(g[0])
        return torch.stack(rows)
    finally:
        model.train(was_training)


class _Stop(BaseException):
    pass


def _linear_output(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    box = {}

    def hook(m, inputs, output):
        box["out"] = output
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return box["out"]


def diverging_colormap(t: torch.Tensor, vmax: float | None = None) -> torch.Tensor:
    """Signed values as RGB in [0, 1]: blue for ``-vmax``, white for 0, red for ``+vmax`` (clamped).

    Args:
        t: ``[H, W]`` or ``[1, H, W]`` -> ``[3, H, W]``; ``[B, H, W]`` or ``[B, 1, H, W]`` ->
            ``[B, 3, H, W]``. A ``[B, C, H, W]`` with C > 1 is summed over channels first.
        vmax: the value shown at full color; default the largest ``|t|`` (one scale for the whole
            batch, so maps can be compared). The scale is symmetric around zero.

    Returns:
        The colours, ``[3, H, W]`` or ``[B, 3, H, W]`` as above.

    Raises:
        ValueError: a tensor of another rank, or a negative ``vmax``.

    >>> diverging_colormap(torch.tensor([[-1.0, 0.0, 1.0]]))[:, 0]
    tensor([[0.1300, 1.0000, 0.7000],
            [0.4000, 1.0000, 0.0900],
            [0.6700, 1.0000, 0.1700]])
    """
    t = t.detach().float()
    if t.dim() == 2:
        maps, single = t.unsqueeze(0), True
    elif t.dim() == 3:
        maps, single = t, t.shape[0] == 1
    elif t.dim() == 4:
        maps, single = t.sum(dim=1), False
    else:
        raise ValueError(f"expected [H, W], [B, H, W] or [B, C, H, W], got shape {tuple(t.shape)}")
    if vmax is None:
        vmax = float(maps.abs().max()) if maps.numel() else 0.0
    vmax = float(vmax)
    if vmax < 0:
        raise ValueError(f"vmax must be >= 0, got {vmax}")
    v = (maps / vmax).clamp(-1, 1) if vmax > 0 else torch.zeros_like(maps)
    v = v.nan_to_num(0.0).unsqueeze(1)  # [B, 1, H, W]
    neg = torch.tensor(NEGATIVE, device=t.device).view(1, 3, 1, 1)
    pos = torch.tensor(POSITIVE, device=t.device).view(1, 3, 1, 1)
    end = torch.where(v < 0, neg, pos)
    rgb = 1.0 + v.abs() * (end - 1.0)
    return rgb[0] if single else rgb


def colorbar(vmax: float, height: int = 64, width: int = 8) -> torch.Tensor:
    """A legend for :func:`diverging_colormap` with this ``vmax``: ``[3, height, width]`` in [0, 1].

    Taller than wide: vertical, ``+vmax`` (red) at the top row, ``-vmax`` (blue) at the bottom.
    Otherwise horizontal, ``-vmax`` at the left. The middle is white (zero); labels are left to
    whoever draws the picture (``report``).

    Args:
        vmax: the value at the ends.
        height: rows of the bar.
        width: columns of the bar.

    Returns:
        The bar, ``[3, height, width]``.

    Raises:
        ValueError: a size below 1 or a ``vmax`` that is not positive.

    >>> bar = colorbar(2.0, height=5, width=1)
    >>> bar[:, :, 0].T
    tensor([[0.7000, 0.0900, 0.1700],
            [0.8500, 0.5450, 0.5850],
            [1.0000, 1.0000, 1.0000],
            [0.5650, 0.7000, 0.8350],
            [0.1300, 0.4000, 0.6700]])
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")
    if not vmax > 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    vertical = height >= width
    n = height if vertical else width
    ramp = torch.linspace(vmax, -vmax, n) if vertical else torch.linspace(-vmax, vmax, n)
    values = ramp.view(n, 1).expand(n, width) if vertical else ramp.view(1, n).expand(height, n)
    return diverging_colormap(values, vmax=vmax)
