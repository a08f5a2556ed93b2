"""Receptive fields: which input pixels a position of a layer's output can see.

A :class:`ReceptiveField` describes, per axis, the box of input pixels that output position ``i``
depends on: ``[start + i * stride, start + i * stride + size)``, clipped to the image. ``start`` is
negative where padding lets the field hang over the border.

:func:`receptive_field` computes it from the module graph when the path from the input to the
layer is a simple chain of modules it knows (``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, activations,
batch norm, dropout, ...; kernel, stride, padding and dilation are taken into account), and
otherwise measures it from gradient footprints (:func:`measure_footprint`): it backpropagates from
output positions through a copy of the model whose weights are all positive (so no two paths can
cancel), with max pooling replaced by sum pooling and ReLU-like activations by identities (so no
path is switched off), and reads the bounding box of the nonzero input gradients.

Example::

    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    >>> rf = receptive_field(net, "3", (1, 28, 28))
    >>> rf.size, rf.stride, rf.start, rf.method
    ((8, 8), (2, 2), (-1, -1), 'analytic')
    >>> box_for(rf, (0, 0), (28, 28))        # (top, left, bottom, right), bottom/right exclusive
    (0, 0, 7, 7)
    >>> measure_footprint(net, "3", (1, 28, 28), (0, 0))
    (0, 0, 7, 7)

:class:`ReceptiveField`, :func:`box_for`, :func:`crop` and :func:`crop_field` live in
:mod:`interp.optvis.receptive_crop`; they are importable from here.

Pure torch: nothing here imports Lightning.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from interp.optvis.capture import expected_input_shape, frozen, get_layer, model_device
from interp.optvis.receptive_crop import Box, ReceptiveField, box_for, crop, crop_field

__all__ = [
    "POINTWISE",
    "Box",
    "ReceptiveField",
    "box_for",
    "crop",
    "crop_field",
    "measure_footprint",
    "receptive_field",
]


# Modules that act on each spatial position separately (the field passes through unchanged).
POINTWISE: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
# Activations that can switch a path off (replaced by identities in the footprint copy).
_GATES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Threshold,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
)


# ---------------------------------------------------------------------------------------------
# Analytic: a chain of known modules


class _Stop(BaseException):
    """Ends the traced forward pass once the target layer has run."""


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (int(v[-2]), int(v[-1]))
    return int(v), int(v)


def _window(module: nn.Module):
    """``(kernel, stride, padding, dilation)`` pairs of a spatial module, or None when unknown."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" and module.padding not in (0, (0, 0)):
            return None  # circular/reflect padding reads pixels from elsewhere: measure instead
        k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
        if module.padding == "valid":
            p = (0, 0)
        elif module.padding == "same":
            p = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)  # torch pads the extra pixel after
        else:
            p = _pair(module.padding)
        return k, s, p, d
    if isinstance(module, nn.MaxPool2d):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        return k, s, _pair(module.padding), _pair(module.dilation)
    if isinstance(module, nn.AvgPool2d):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        return k, s, _pair(module.padding), (1, 1)
    return None


def _trace_chain(model: nn.Module, layer: str, x: torch.Tensor):
    """The leaf modules from the input to ``layer`` when they form a simple chain, else None.

    A chain: the first module reads the model's input itself, each next one reads exactly the
    previous one's output, and the target layer's output is the last one's.
    """
    target = get_layer(model, layer)
    target_leaves = {id(m) for m in target.modules()}
    calls: list[tuple[str, nn.Module, tuple, object]] = []
    state = {"target_out": None}
    handles = []

    def leaf_hook(name):
        def hook(module, inputs, output):
            calls.append((name, module, inputs, output))

        return hook

    def target_hook(module, inputs, output):
        state["target_out"] = output
        raise _Stop

    for name, m in model.named_modules():
        if name and not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(leaf_hook(name)))
    handles.append(target.register_forward_hook(target_hook))
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    out = state["target_out"]
    if out is None or not calls:
        return None, out
    prev = x
    for _, _module, inputs, output in calls:
        if len(inputs) != 1 or inputs[0] is not prev or not isinstance(output, torch.Tensor):
            return None, out
        prev = output
    if prev is not out:
        return None, out
    if not any(id(m) in target_leaves for _, m, _, _ in calls):  # the layer has leaves of its own
        return None, out
    return [(n, m, inputs[0]) for n, m, inputs, _ in calls], out


def _probe_pointwise(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether changing one input pixel changes only that pixel of ``module``'s output (probed twice).

    For modules this file does not know (a model's own normalization, a channel flip): they count
    as pointwise when their output has the input's spatial size and a change at a middle and at a
    corner pixel stays there.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return False
    with torch.no_grad():
        base = module(x)
        if not isinstance(base, torch.Tensor) or base.dim() != 4 or base.shape[-2:] != x.shape[-2:]:
            return False
        h, w = x.shape[-2:]
        for i, j in ((h // 2, w // 2), (0, 0)):
            bumped = x.clone()
            bumped[..., i, j] += 1.0
            diff = (module(bumped) - base).abs().sum(dim=(0, 1)) > 0
            diff[i, j] = False
            if diff.any():
                return False
    return True


def _analytic(chain, in_hw, out_hw) -> ReceptiveField | None:
    size, stride, start = [1, 1], [1, 1], [0, 0]
    for _, module, inp in chain:
        win = _window(module)
        if win is None:
            if isinstance(module, POINTWISE) or _probe_pointwise(module, inp):
                continue
            return None
        k, s, p, d = win
        for a in range(2):
            k_eff = d[a] * (k[a] - 1) + 1
            size[a] += (k_eff - 1) * stride[a]
            start[a] -= p[a] * stride[a]
            stride[a] *= s[a]
    return ReceptiveField((size[0], size[1]), (stride[0], stride[1]), (start[0], start[1]), in_hw, out_hw, "analytic")


# ---------------------------------------------------------------------------------------------
# Measured: gradient footprints through an all-positive copy


class _SumPool2d(nn.Module):
    """Max pooling's window as a sum (every pixel of the window gets gradient), dilation included."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.pool = pool
        self.k, self.s = _pair(pool.kernel_size), _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.p, self.d = _pair(pool.padding), _pair(pool.dilation)

    def forward(self, x):
        oh, ow = self.pool(x.detach()).shape[-2:]  # output size, ceil_mode included
        c, h, w = x.shape[-3:]
        need_h = (oh - 1) * self.s[0] + self.d[0] * (self.k[0] - 1) + 1
        need_w = (ow - 1) * self.s[1] + self.d[1] * (self.k[1] - 1) + 1
        extra_h, extra_w = max(0, need_h - h - 2 * self.p[0]), max(0, need_w - w - 2 * self.p[1])
        x = F.pad(x, (self.p[1], self.p[1] + extra_w, self.p[0], self.p[0] + extra_h))
        weight = x.new_ones(c, 1, *self.k)
        y = F.conv2d(x, weight, stride=self.s, dilation=self.d, groups=c)
        return y[..., :oh, :ow]


def _positive_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy where no path from input to output can cancel or switch off."""
    net = copy.deepcopy(model).to(torch.float64).eval()
    for name, m in list(net.named_modules()):
        replacement: nn.Module | None = None
        if isinstance(m, nn.MaxPool2d):
            replacement = _SumPool2d(m)
        elif isinstance(m, nn.AdaptiveMaxPool2d):
            replacement = nn.AdaptiveAvgPool2d(m.output_size)
        elif isinstance(m, _GATES):
            replacement = nn.Identity()
        if replacement is not None and name:
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            setattr(parent, child, replacement)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() >= 2:  # weights: uniform averaging (positive, magnitudes stay near the input's)
                p.copy_(torch.ones_like(p) / max(1, p[0].numel()))
            else:
                p.fill_(1.0)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.zero_()
                assert m.running_var is not None
                m.running_var.fill_(1.0)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _resolve_shape(model: nn.Module, input_shape) -> tuple[int, int, int]:
    if input_shape is None:
        input_shape = expected_input_shape(model)
        if input_shape is None:
            raise ValueError("give input_shape (C, H, W): the model declares no example_input_array")
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) == 4:
        input_shape = input_shape[1:]
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    return input_shape


def _layer_output(net: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    target = get_layer(net, layer)
    box = {}

    def hook(module, inputs, output):
        box["out"] = output[0] if isinstance(output, (tuple, list)) else output
        raise _Stop

    handle = target.register_forward_hook(hook)
    try:
        net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "out" not in box:
        raise RuntimeError(f"layer {layer!r} did not run in the forward pass of {type(net).__name__}")
    return box["out"]


def _footprints(model: nn.Module, layer: str, input_shape, positions, channel=None, positive=True):
    """Bounding boxes of nonzero input gradients, one per output position (one batched backward).

    A position of ``None`` means the middle of the output map.
    """
    if positive:
        return _footprints_of(
            _positive_copy(model), layer, input_shape, positions, channel, torch.float64, model_device(model)
        )
    with frozen(model):  # eval mode (no batch statistics, no dropout), weights left alone
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        return _footprints_of(model, layer, input_shape, positions, channel, dtype, model_device(model))


def _footprints_of(net, layer, input_shape, positions, channel, dtype, device):
    c, h, w = input_shape
    n = len(positions)
    gen = torch.Generator().manual_seed(0)
    x = (1.0 + torch.rand(n, c, h, w, generator=gen, dtype=torch.float64)).to(device=device, dtype=dtype)
    x.requires_grad_(True)
    out = _layer_output(net, layer, x)
    mask = torch.zeros_like(out)
    for k, pos in enumerate(positions):
        if out.dim() == 4:
            i, j = pos if pos is not None else (out.shape[-2] // 2, out.shape[-1] // 2)
            if not (0 <= i < out.shape[-2] and 0 <= j < out.shape[-1]):
                raise ValueError(f"position {(i, j)} is outside {layer!r}'s output of size {tuple(out.shape[-2:])}")
            if channel is None:
                mask[k, :, i, j] = 1.0
            else:
                mask[k, channel, i, j] = 1.0
        elif channel is None:
            mask[k] = 1.0
        else:
            mask[k].view(-1)[channel] = 1.0
    (grad,) = torch.autograd.grad((out * mask).sum(), x)
    boxes: list[tuple[int, int, int, int] | None] = []
    for k in range(n):
        nz = grad[k].abs().sum(0) > 0
        if not nz.any():
            boxes.append(None)
            continue
        rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
        boxes.append((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
    return boxes, tuple(out.shape[-2:]) if out.dim() == 4 else (1, 1)


def measure_footprint(
    model: nn.Module,
    layer: str,
    input_shape: Sequence[int] | None = None,
    position: Sequence[int] | None = None,
    channel: int | None = None,
    positive: bool = True,
) -> Box:
    """Bounding box of the input pixels whose gradient reaches ``layer`` at output ``position``.

    Args:
        model: any ``nn.Module`` (not changed: a copy is measured).
        layer: a name from ``model.named_modules()``.
        input_shape: (C, H, W); default from ``model.example_input_array``.
        position: output position ``(i, j)``; default the middle of the output map. Ignored for a
            layer without spatial axes (all its units count).
        channel: one channel (or unit) only; default all of them.
        positive: measure the all-positive copy (weights uniform and positive, max pooling as sum
            pooling, ReLU-like activations as identities, float64): the footprint of the
            architecture, which is the receptive field. ``False`` measures ``model`` itself on a
            random input: where a max pool or a dead ReLU cut paths the footprint can be smaller.

    Returns:
        ``(top, left, bottom, right)``, bottom/right exclusive.

    Raises:
        RuntimeError: no input pixel has a nonzero gradient.
    """
    shape = _resolve_shape(model, input_shape)
    pos = None if position is None else tuple(int(p) for p in position)
    boxes, _ = _footprints(model, layer, shape, [pos], channel, positive)
    if boxes[0] is None:
        raise RuntimeError(f"no input pixel reaches {layer!r} at position {pos}: the path is not differentiable")
    return boxes[0]


def _fit_axis(intervals: list[tuple[int, int, int]], n: int):
    """(size, stride, start) of one axis from measured ``(index, low, high)`` clipped to ``[0, n)``."""
    lows = [(i, lo) for i, lo, hi in intervals if lo > 0]
    highs = [(i, hi) for i, lo, hi in intervals if hi < n]
    whole = [(i, lo, hi) for i, lo, hi in intervals if lo > 0 and hi < n]
    stride = None
    for pts in (lows, highs):
        if len(pts) >= 2 and stride is None:
            (i0, v0), (i1, v1) = pts[0], pts[-1]
            if (v1 - v0) % (i1 - i0) == 0:
                stride = (v1 - v0) // (i1 - i0)
    if stride is None:
        return None
    if whole:
        i, lo, hi = whole[0]
        return hi - lo, stride, lo - i * stride
    if lows and highs:
        start = lows[0][1] - lows[0][0] * stride
        end = highs[0][1] - highs[0][0] * stride
        return end - start, stride, start
    return None


def _measured(model, layer, shape) -> ReceptiveField:
    c, h, w = shape
    with torch.no_grad():
        probe = _layer_output(
            _positive_copy(model), layer, torch.ones(1, *shape, dtype=torch.float64, device=model_device(model))
        )
    if probe.dim() != 4:
        return ReceptiveField((h, w), (h, w), (0, 0), (h, w), (1, 1), "dense")
    oh, ow = probe.shape[-2:]
    positions = [(i, ow // 2) for i in range(oh)] + [(oh // 2, j) for j in range(ow)]
    boxes, _ = _footprints(model, layer, shape, positions)
    if any(b is None for b in boxes):
        raise RuntimeError(f"some positions of {layer!r} have no differentiable path to the input")
    rows = [(i, b[0], b[2]) for (i, _), b in zip(positions[:oh], boxes[:oh])]
    cols = [(j, b[1], b[3]) for (_, j), b in zip(positions[oh:], boxes[oh:])]
    fits = _fit_axis(rows, h), _fit_axis(cols, w)
    if None in fits:
        raise RuntimeError(
            f"cannot measure the receptive field of {layer!r} on a {h}x{w} input: it covers the image "
            "at almost every position; measure on a larger input_shape"
        )
    (sh, th, ah), (sw, tw, aw) = fits
    return ReceptiveField((sh, sw), (th, tw), (ah, aw), (h, w), (int(oh), int(ow)), "gradient")


def receptive_field(
    model: nn.Module,
    layer: str,
    input_shape: Sequence[int] | None = None,
    method: str = "auto",
) -> ReceptiveField:
    """The receptive field of ``layer``'s output positions in ``model``'s input.

    A layer whose output has no spatial axes (after a flatten, a linear layer or global pooling)
    gets the whole image, with ``method == "dense"``.

    The box is the field's span: inside the image every pixel of it is seen, except where a
    dilated kernel's padding is not a multiple of its dilation, where the first pixel(s) at the
    border can fall between two taps (the box is then a pixel larger than :func:`measure_footprint`).

    Args:
        model: any ``nn.Module`` taking images ``[N, C, H, W]`` (not changed).
        layer: a name from ``model.named_modules()``.
        input_shape: (C, H, W); default from ``model.example_input_array``.
        method: ``"auto"`` (analytic for a chain of known modules, else measured), ``"analytic"``
            (raise a ValueError when the path is not such a chain) or ``"gradient"``.

    Returns:
        The field, with the method that found it.

    Raises:
        ValueError: an unknown method or layer, no ``input_shape`` (given or declared), or ``method="analytic"``
            on a path that is not a simple chain.
        RuntimeError: a field the gradient footprints cannot measure on this input size.
    """
    if method not in ("auto", "analytic", "gradient"):
        raise ValueError(f"method must be 'auto', 'analytic' or 'gradient', got {method!r}")
    shape = _resolve_shape(model, input_shape)
    in_hw = shape[1:]
    if method in ("auto", "analytic"):
        was_training = model.training
        model.eval()
        try:
            x = torch.zeros(
                1, *shape, device=model_device(model), dtype=next((p.dtype for p in model.parameters()), torch.float32)
            )
            chain, out = _trace_chain(model, layer, x)
        finally:
            model.train(was_training)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if isinstance(out, torch.Tensor) and out.dim() != 4:
            return ReceptiveField(in_hw, in_hw, (0, 0), in_hw, (1, 1), "dense")
        rf = _analytic(chain, in_hw, tuple(out.shape[-2:])) if chain is not None else None
        if rf is not None:
            return rf
        if method == "analytic":
            raise ValueError(
                f"the path from the input to {layer!r} is not a simple chain of known modules "
                "(Conv2d, MaxPool2d, AvgPool2d, activations, norms, dropout): use method='gradient'"
            )
    return _measured(model, layer, shape)
