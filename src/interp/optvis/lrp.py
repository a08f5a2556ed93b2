"""Layer-wise relevance propagation (LRP) for units, through Zennit.

:func:`lrp_attributions` explains a unit (a model, a layer name and a unit index, as
:func:`~interp.optvis.attribution.neuron_attributions`) by LRP with a Zennit composite (``EpsilonPlusFlat`` by
default: the flat rule on the first Linear/Conv layer, z-plus on the other convolutions, epsilon on the other Linear
layers, ReLUs and batch norms pass relevance through, sums and average pools share it in proportion to their inputs,
max pools route it to the maximum). Relevance starts at the unit's layer: the layer's output with everything but
the unit set to zero, so the total relevance is the unit's value; LRP then spreads it down to the input.

Canonizers (:func:`canonizers_for`) put the model in a form the rules fit, for the time of the call (the model is
restored exactly after):

* batch norms are merged into the Linear/Conv layer that feeds them (and left as an exact identity: Zennit's merge
  keeps the batch norm's ``eps``, which still scales by ``1 / sqrt(1 + eps)``), also across max pools (the MNIST CNN's
  ``conv -> pool -> bn``: ``maxpool(s * z + t) = s * maxpool(z) + t`` for a per-channel scale ``s > 0``, so the merge
  is exact when every scale is positive; Zennit's ``SequentialMergeBatchNorm`` only merges a batch norm that directly
  follows the layer). The pairs are found by tracing which module's output feeds which, up to the unit's layer, so a
  batch norm after the unit's layer is never merged into it;
* the residual additions of torchvision's ResNet blocks (Zennit's block canonizers) and of this project's Caffe
  ResNet-50 bottleneck (:class:`interp.models.vggface2.Bottleneck`) become a ``Sum`` module, which gets a rule.

The preprocessing modules in front of this project's models (``Normalize``, ``CaffePreprocess``) pass relevance
through per input element: the relevance at their output goes to the input element it comes from (channels flipped
back for BGR), unscaled, so the sum is kept. The :class:`~interp.models.normalized.Normalized` wrapper is handled by
explaining the wrapped network on the normalized input (the same pixels).

Zennit is an optional dependency (``interp[eval]``), imported when a function here is called.

References:
    Bach et al., "On pixel-wise explanations for non-linear classifier decisions by layer-wise relevance
    propagation", PLoS ONE 2015. Montavon et al., "Layer-wise relevance propagation: an overview", 2019.
    Anders et al., "Software for dataset-wide XAI: from local explanations to global insights with Zennit, CoRelAy,
    and ViRelAy", 2021.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from interp.optvis.capture import Capture, frozen, get_layer, model_device

PREPROCESSING = ("Normalize", "CaffePreprocess")
"""Class names of modules treated as per-element preprocessing (relevance passes through unscaled)."""

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_TRANSPARENT = (nn.Identity, nn.Dropout, nn.Dropout2d)
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

__all__ = ["PREPROCESSING", "batchnorm_merges", "canonizers_for", "lrp_attributions"]


def _zennit() -> Any:
    try:
        import zennit
        import zennit.canonizers
        import zennit.composites
        import zennit.core
        import zennit.layer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LRP needs Zennit: pip install 'interp[eval]' (zennit>=0.5.1)") from exc
    return zennit


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and not any(True for _ in m.children())}


def batchnorm_merges(model: nn.Module, layer: str, example: torch.Tensor) -> list[tuple[str, str]]:
    """The (Linear/Conv, batch norm) pairs to merge for units of ``layer``: a batch norm whose input is the output
    of a Linear/Conv layer, directly or through max pools (and identities, dropouts), in the forward pass up to
    ``layer``. A pair through a max pool whose batch norm has a non-positive scale ``weight / sqrt(var + eps)`` is
    left out with a warning (the merge would not be exact); that batch norm then passes relevance through.

    Args:
        model: the network.
        layer: the units' layer (the trace stops there).
        example: an input batch (one item is used).

    Returns:
        ``[(linear_name, batchnorm_name), ...]``.
    """
    leaves = _leaves(model)
    calls: list[tuple[str, torch.Tensor | None, torch.Tensor]] = []

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if isinstance(output, torch.Tensor):
                calls.append((name, first, output))

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in leaves.items()]
    try:
        with frozen(model), torch.no_grad(), Capture(model, [layer], clone=False) as cap:
            cap(example.detach()[:1].to(model_device(model)))
    finally:
        for h in handles:
            h.remove()
    producer = {id(out): (name, inp) for name, inp, out in calls}
    merges = []
    for name, inp, _ in calls:
        bn = leaves[name]
        if not isinstance(bn, _BATCHNORM) or inp is None:
            continue
        through_pool, source = False, producer.get(id(inp))
        while source is not None and isinstance(leaves[source[0]], _POOLS + _TRANSPARENT):
            through_pool = through_pool or isinstance(leaves[source[0]], _POOLS)
            source = producer.get(id(source[1])) if source[1] is not None else None
        if source is None or not isinstance(leaves[source[0]], _LINEAR) or bn.running_var is None:
            continue
        scale = bn.weight / (bn.running_var + bn.eps).sqrt() if bn.weight is not None else None
        if through_pool and scale is not None and not bool((scale > 0).all()):
            warnings.warn(
                f"{name} has non-positive scales after a max pool: not merged into {source[0]} "
                "(the merge would change the function); it passes relevance through",
                stacklevel=2,
            )
            continue
        merges.append((source[0], name))
    return merges


def _exact_merge() -> Any:
    """Zennit's ``NamedMergeBatchNorm`` with an exact identity left behind: Zennit sets the batch norm to
    ``weight=1, bias=0, mean=0, var=1`` but keeps its ``eps``, so it still divides by ``sqrt(1 + eps)`` (a relative
    change of about ``eps / 2`` per batch norm, 5e-6 by default). This one also sets ``eps`` to 0 for the time of
    the merge and puts it back after."""
    base: Any = _zennit().canonizers.NamedMergeBatchNorm

    class ExactNamedMergeBatchNorm(base):
        def register(self, linears: list, batch_norm: Any) -> None:
            self.batch_norm_eps = batch_norm.eps
            super().register(linears, batch_norm)
            batch_norm.eps = 0.0

        def remove(self) -> None:
            super().remove()
            self.batch_norm.eps = self.batch_norm_eps

    return ExactNamedMergeBatchNorm


def _bottleneck_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """interp.models.vggface2.Bottleneck's forward with the residual addition as a Zennit ``Sum`` module."""
    shortcut = x if self.downsample is None else self.downsample(x)
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu3(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))


def _is_face_bottleneck(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__name__ == "Bottleneck" and cls.__module__ == "interp.models.vggface2"


def canonizers_for(model: nn.Module, layer: str, example: torch.Tensor) -> list:
    """The Zennit canonizers :func:`lrp_attributions` uses for units of ``layer`` of ``model``.

    Args:
        model: the network.
        layer: the units' layer.
        example: an input batch, to trace which batch norms follow which layers.

    Returns:
        A list of Zennit canonizers: the batch-norm merges of :func:`batchnorm_merges`, then the residual-sum
        canonizers of torchvision ResNet blocks and of this project's Caffe ResNet-50 bottlenecks where present.
    """
    zennit = _zennit()
    out: list = []
    merges = batchnorm_merges(model, layer, example)
    if merges:
        out.append(_exact_merge()([((lin,), bn) for lin, bn in merges]))
    kinds = {type(m).__module__ for m in model.modules()}
    if any(k.startswith("torchvision.models.resnet") for k in kinds):
        blocks = importlib.import_module("zennit.torchvision")
        out += [blocks.ResNetBottleneckCanonizer(), blocks.ResNetBasicBlockCanonizer()]
    if any(_is_face_bottleneck(m) for m in model.modules()):

        def attributes(name: str, module: nn.Module) -> dict | None:
            if _is_face_bottleneck(module):
                return {"forward": _bottleneck_forward.__get__(module), "canonizer_sum": zennit.layer.Sum()}
            return None

        out.append(zennit.canonizers.AttributeCanonizer(attributes))
    return out


def _pass_through_hook() -> Any:
    """A Zennit hook for a per-element preprocessing module ``y = P(a * x + b)`` (``P`` a permutation, e.g. a
    channel flip): relevance ``R_in = J^T R_out / J^T 1`` (``J`` the Jacobian), i.e. ``P^T R_out``: each output
    element's relevance goes, unscaled, to the input element it comes from."""
    base: Any = _zennit().core.Hook

    class PassThrough(base):
        def forward(self, module: nn.Module, input: tuple, output: torch.Tensor) -> None:
            self.stored_tensors["input"] = input

        def backward(self, module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
            x = self.stored_tensors["input"][0].detach().requires_grad_(True)
            with torch.enable_grad():
                y = module.forward(x)
                (routed,) = torch.autograd.grad(y, x, grad_outputs=grad_output[0], retain_graph=True)
                (scale,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y))
            relevance = torch.where(scale != 0, routed / torch.where(scale != 0, scale, 1), 0)
            return (relevance,) + (None,) * (len(grad_input) - 1)

    return PassThrough()


def _composite(
    net: nn.Module,
    composite: str | Any,
    canonizers: list,
    preprocessing: Sequence[str],
    epsilon: float,
    stabilizer: float,
) -> Any:
    zennit = _zennit()
    if isinstance(composite, str):
        known = zennit.composites.COMPOSITES
        if composite not in known:
            raise ValueError(f"unknown Zennit composite {composite!r}: use one of {', '.join(sorted(known))}")
        accepted = inspect.signature(known[composite]).parameters
        options = {"canonizers": canonizers, "epsilon": epsilon, "stabilizer": stabilizer}
        base = known[composite](**{k: v for k, v in options.items() if k in accepted})
    else:
        base = composite
    names = tuple(
        name for name, m in net.named_modules() if name and (type(m).__name__ in preprocessing or name in preprocessing)
    )
    if not names:
        return base
    passing = zennit.composites.NameMapComposite([(names, _pass_through_hook())])
    return zennit.composites.MixedComposite([passing, base])


def _start_relevance(acts: torch.Tensor, units: torch.Tensor, reduce: str) -> torch.Tensor:
    """The unit's part of the layer output per row (all else zero): the relevance LRP starts from."""
    if units.numel() and (int(units.min()) < 0 or int(units.max()) >= acts.shape[1]):
        raise IndexError(f"unit index out of range: the layer has {acts.shape[1]} units, got {units.unique().tolist()}")
    rows = torch.arange(acts.shape[0], device=acts.device)
    start = torch.zeros_like(acts)
    if acts.dim() == 2:
        start[rows, units] = acts[rows, units]
        return start
    channel = acts[rows, units]  # [B, *spatial]
    if reduce == "mean":
        start[rows, units] = channel / channel[0].numel()
    elif reduce == "sum":
        start[rows, units] = channel
    elif reduce == "max":
        flat = channel.reshape(len(rows), -1)
        one_hot = torch.zeros_like(flat).scatter_(1, flat.argmax(1, keepdim=True), 1.0)
        start[rows, units] = (flat * one_hot).reshape(channel.shape)
    else:
        raise ValueError(f"reduce must be 'mean', 'sum' or 'max', got {reduce!r}")
    return start


def lrp_attributions(
    model: nn.Module,
    layer: str,
    units: int | Sequence[int],
    inputs: torch.Tensor,
    composite: str | Any = "epsilon_plus_flat",
    canonizers: list | None = None,
    reduce: str = "mean",
    preprocessing: Sequence[str] = PREPROCESSING,
    epsilon: float = 1e-6,
    stabilizer: float = 1e-6,
    batch_size: int = 64,
) -> torch.Tensor:
    """LRP maps of ``units`` of ``layer`` for ``inputs`` (Zennit; see the module docstring for the rules).

    Relevance starts at ``layer``'s output as the unit's part of it, all other units zero: a Linear unit's value;
    for a conv channel (``reduce``) ``"mean"``: the channel's map divided by its size, so the total is the channel's
    spatial mean, the unit's value everywhere else in this library; ``"sum"``: the channel's map (total: its spatial
    sum); ``"max"``: only the position of its spatial maximum (total: the maximum). LRP conserves the total down
    to the input up to what biases absorb (the epsilon and z-plus rules give a bias its share; the flat rule and
    the batch-norm merges do not lose any when biases are zero) and the ``epsilon`` and ``stabilizer`` terms.

    Args:
        model: the network (eval mode and restored exactly after: canonizers and hooks are removed).
        layer: the units' layer, as in ``model.named_modules()``.
        units: one unit index (maps shaped like ``inputs``) or several (``[U, N, ...]``).
        inputs: ``[N, ...]`` inputs.
        composite: a Zennit composite name (``zennit.composites.COMPOSITES``; default ``"epsilon_plus_flat"``) or a
            composite instance (used as given, without :func:`canonizers_for`).
        canonizers: Zennit canonizers for a composite given by name; ``None``: :func:`canonizers_for`.
        reduce: how a conv channel's relevance starts: ``"mean"``, ``"sum"`` or ``"max"``.
        preprocessing: class (or module) names of per-element preprocessing modules that pass relevance through.
        epsilon: the epsilon of the epsilon rule (composites that take one).
        stabilizer: the stabilizer of the other rules' denominators (composites that take one).
        batch_size: rows (input, unit) per forward and backward pass.

    Returns:
        The relevance maps on the CPU, in the inputs' dtype.
    """
    single = isinstance(units, int)
    unit_list = [units] if isinstance(units, int) else list(units)
    get_layer(model, layer)
    device = model_device(model)
    net, name, x = model, layer, inputs.detach().to(device)
    inner = getattr(model, "model", None)
    if type(model).__name__ == "Normalized" and isinstance(inner, nn.Module):
        net, name = inner, layer.removeprefix("model.")  # the same pixels, after the normalization
        x = (x - model.mean) / model.std  # type: ignore[operator]
    with frozen(net):
        if canonizers is None and isinstance(composite, str):
            canonizers = canonizers_for(net, name, x)
        comp = _composite(net, composite, canonizers or [], preprocessing, epsilon, stabilizer)
        n = x.shape[0]
        rows_unit = torch.as_tensor(unit_list, dtype=torch.long, device=device).repeat_interleave(n)
        rows_input = torch.arange(n, device=device).repeat(len(unit_list))
        maps = []
        with comp.context(net):
            for start in range(0, len(rows_unit), batch_size):
                units_b = rows_unit[start : start + batch_size]
                xb = x[rows_input[start : start + batch_size]].clone().requires_grad_(True)
                with Capture(net, [name], clone=False) as cap, torch.enable_grad():
                    acts = cap(xb)[name]
                    (relevance,) = torch.autograd.grad(acts, xb, grad_outputs=_start_relevance(acts, units_b, reduce))
                maps.append(relevance.detach().cpu())
    out = torch.cat(maps).reshape(len(unit_list), n, *inputs.shape[1:]).to(inputs.dtype)
    return out[0] if single else out
