"""Layer-wise relevance propagation (LRP) for units, through Zennit.

:func:`lrp_attributions` explains a unit (a model, a layer name and a unit index, as
:func:`~interp.optvis.attribution.neuron_attributions`) by LRP with a Zennit composite (``EpsilonPlusFlat`` by
default: the flat rule on the first Linear/Conv layer, z-plus on the other convolutions, epsilon on the other Linear
layers, ReLUs and batch norms pass relevance through, sums and average pools share it in proportion to their inputs,
max pools route it to the maximum). Relevance starts at the unit's layer: the layer's output with everything but
the unit set to zero, so the total relevance is the unit's value; LRP then spreads it down to the input.

Depthwise convolutions (``groups == in_channels``, e.g. in the face-api expression net's separable convolutions) get
the epsilon rule in the composites whose convolution rule splits contributions by sign (:data:`SIGN_SPLIT`: z-plus,
alpha-beta): an output of a 3x3 depthwise conv has nine inputs, and where those under its positive weights are all
zero (common after a ReLU) z-plus has no positive contribution to share relevance by and drops it (about 40% of a
channel's relevance, measured on that net). z-plus drops relevance the same way at any output with no positive
contribution that still gets relevance: rare when a conv's output has many inputs, but in the expression net the
pointwise outputs enter the dense sums before a ReLU, so the default composite conserves there to about 1e-4.

Canonizers (:func:`canonizers_for`) put the model in a form the rules fit, for the time of the call (the model is
restored exactly after):

* batch norms are merged into the Linear/Conv layer that feeds them (and left as an exact identity: Zennit's merge
  keeps the batch norm's ``eps``, which still scales by ``1 / sqrt(1 + eps)``), also across max pools (the MNIST CNN's
  ``conv -> pool -> bn``: ``maxpool(s * z + t) = s * maxpool(z) + t`` for a per-channel scale ``s > 0``, so the merge
  is exact when every scale is positive; Zennit's ``SequentialMergeBatchNorm`` only merges a batch norm that directly
  follows the layer). The pairs are found by tracing which module's output feeds which, up to the unit's layer, so a
  batch norm after the unit's layer is never merged into it;
* the per-channel scales of the face-api recognition net (:class:`interp.models.faceapi.Scale`, ``x * w + b``: a
  batch norm folded by dlib) are folded into the convolution before them the same way (``w`` into its weight, the
  bias becomes ``b_conv * w + b``; the scale is left as ``x * 1 + 0``, an exact identity); the original tensors are
  put back after;
* the residual additions of torchvision's ResNet blocks (Zennit's block canonizers), of this project's Caffe
  ResNet-50 bottleneck (:class:`interp.models.vggface2.Bottleneck`) and of the face-api recognition net's blocks
  (:class:`interp.models.faceapi.ResidualBlock`, the zero-padded average-pool shortcut and the branch) become a
  ``Sum`` module, which gets a rule; so do the dense sums of the face-api expression net
  (:class:`interp.models.faceapi.DenseBlock`: ``out1 + out2``, ``out1 + out2 + out3``, ``out1 + ... + out4``, one
  ``Sum`` module each, as a Zennit hook holds one forward call).

The preprocessing modules in front of this project's models (:data:`PREPROCESSING`: ``Normalize``,
``CaffePreprocess``, ``FaceApiPreprocess``) are affine, ``y = A x + c``, and pass relevance back in proportion to
the weights of their linear part: ``R_in = A^T (R_out / (A 1))``. For a per-element map (a normalization, a channel
flip) that is the identity on relevance: each output element's relevance goes, unscaled, to the input element it
comes from. For face-api's pad-and-resize (an input not at the net's size) it spreads each resized pixel's relevance
over its source pixels by the bilinear weights, which sum to one, so the sum is kept for square inputs; the black
padding of a non-square input comes from no input pixel (``A 1 = 0`` there): the relevance that the rules above put
on it is dropped, as a bias's share. The :class:`~interp.models.normalized.Normalized` wrapper is handled by
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
import torch.nn.functional as F
from torch import nn

from interp.optvis.capture import Capture, frozen, get_layer, model_device

PREPROCESSING = ("Normalize", "CaffePreprocess", "FaceApiPreprocess")
"""Class names of modules treated as affine preprocessing (relevance passes back by the weights of their linear
part: unscaled through a per-element map, by the interpolation weights through a resize)."""

SIGN_SPLIT = ("epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat")
"""Zennit composites whose convolution rule splits contributions by sign (z-plus, alpha-beta); with them the
depthwise convolutions get the epsilon rule instead (see the module docstring)."""

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_TRANSPARENT = (nn.Identity, nn.Dropout, nn.Dropout2d)
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

__all__ = ["PREPROCESSING", "SIGN_SPLIT", "batchnorm_merges", "canonizers_for", "lrp_attributions"]


def _zennit() -> Any:
    try:
        import zennit
        import zennit.canonizers
        import zennit.composites
        import zennit.core
        import zennit.layer
        import zennit.rules
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("LRP needs Zennit: pip install 'interp[eval]' (zennit>=0.5.1)") from exc
    return zennit


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and not any(True for _ in m.children())}


def _is_faceapi(module: nn.Module, name: str) -> bool:
    cls = type(module)
    return cls.__name__ == name and cls.__module__.startswith("interp.models.faceapi")


def batchnorm_merges(model: nn.Module, layer: str, example: torch.Tensor) -> list[tuple[str, str]]:
    """The (Linear/Conv, batch norm) pairs to merge for units of ``layer``: a batch norm (or a face-api
    :class:`~interp.models.faceapi.Scale`, a folded one) whose input is the output of a Linear/Conv layer, directly
    or through max pools (and identities, dropouts), in the forward pass up to ``layer``. A pair through a max pool
    whose batch norm has a non-positive scale (``weight / sqrt(var + eps)``; a ``Scale``'s ``weight``) is left out
    with a warning (the merge would not be exact); that batch norm then passes relevance through.

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
        is_scale = _is_faceapi(bn, "Scale")
        if not (isinstance(bn, _BATCHNORM) or is_scale) or inp is None:
            continue
        through_pool, source = False, producer.get(id(inp))
        while source is not None and isinstance(leaves[source[0]], _POOLS + _TRANSPARENT):
            through_pool = through_pool or isinstance(leaves[source[0]], _POOLS)
            source = producer.get(id(source[1])) if source[1] is not None else None
        if source is None or not isinstance(leaves[source[0]], _LINEAR):
            continue
        weight = getattr(bn, "weight", None)
        scale: torch.Tensor | None
        if is_scale:
            scale = weight
        elif getattr(bn, "running_var", None) is None:
            continue
        else:
            scale = weight / (bn.running_var + bn.eps).sqrt() if weight is not None else None  # type: ignore[operator]
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


def _scale_merge() -> Any:
    """A Zennit canonizer that folds face-api ``Scale`` modules (``x * w + b`` per channel) into the Linear/Conv
    layer before them, for name pairs ``[(linear, scale), ...]``: the layer's weight times ``w`` (per output
    channel), its bias ``bias * w + b`` (a zero bias is added where it has none); the scale becomes ``x * 1 + 0``.
    ``remove`` puts the original tensors back (the same storage: the model is bitwise unchanged)."""
    base: Any = _zennit().canonizers.Canonizer

    class NamedMergeScale(base):
        def __init__(self, name_map: list[tuple[str, str]]) -> None:
            super().__init__()
            self.name_map = name_map
            self.saved: tuple[Any, ...] = ()

        def apply(self, root_module: nn.Module) -> list:
            lookup = dict(root_module.named_modules())
            instances = []
            for linear_name, scale_name in self.name_map:
                instance = self.copy()
                instance.register(lookup[linear_name], lookup[scale_name])
                instances.append(instance)
            return instances

        def register(self, linear: Any, scale: Any) -> None:
            weight, bias = linear.weight.data, getattr(linear.bias, "data", None)
            self.saved = (linear, scale, weight, bias, scale.weight.data, scale.bias.data)
            w, b = scale.weight.data, scale.bias.data
            linear.weight.data = weight * w.reshape(-1, *(1,) * (weight.dim() - 1))
            if bias is None:
                linear.bias = nn.Parameter(torch.zeros_like(w))
                bias = linear.bias.data
            linear.bias.data = bias * w + b
            scale.weight.data = torch.ones_like(w)
            scale.bias.data = torch.zeros_like(b)

        def remove(self) -> None:
            linear, scale, weight, bias, w, b = self.saved
            linear.weight.data = weight
            if bias is None:
                linear.bias = None
            else:
                linear.bias.data = bias
            scale.weight.data, scale.bias.data = w, b

        def copy(self) -> Any:
            return self.__class__(self.name_map)

    return NamedMergeScale


def _bottleneck_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """interp.models.vggface2.Bottleneck's forward with the residual addition as a Zennit ``Sum`` module."""
    shortcut = x if self.downsample is None else self.downsample(x)
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu3(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))


def _residual_block_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """interp.models.faceapi.ResidualBlock's forward with the residual addition as a Zennit ``Sum`` module."""
    out = self.conv2(self.conv1(x))
    shortcut = x
    if self.shortcut is not None:
        shortcut = self.shortcut(x)
        if shortcut.shape[1] != out.shape[1]:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, out.shape[1] - shortcut.shape[1]))
        dh, dw = shortcut.shape[2] - out.shape[2], shortcut.shape[3] - out.shape[3]
        if dh or dw:
            out = F.pad(out, (0, dw, 0, dh))
    return self.relu(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))


def _dense_block_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """interp.models.faceapi.DenseBlock's forward with its three dense sums as Zennit ``Sum`` modules."""
    out1 = self.relu0(self.conv0(x))
    out2 = self.conv1(out1)
    out3 = self.conv2(self.relu1(self.canonizer_sum(torch.stack([out1, out2], dim=-1))))
    out4 = self.conv3(self.relu2(self.canonizer_sum2(torch.stack([out1, out2, out3], dim=-1))))
    return self.relu3(self.canonizer_sum3(torch.stack([out1, out2, out3, out4], dim=-1)))


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
        A list of Zennit canonizers: the batch-norm (and face-api ``Scale``) merges of :func:`batchnorm_merges`,
        then the sum canonizers of torchvision ResNet blocks, of this project's Caffe ResNet-50 bottlenecks and of
        the face-api residual and dense blocks where present.
    """
    zennit = _zennit()
    out: list = []
    merges = batchnorm_merges(model, layer, example)
    modules = dict(model.named_modules())
    batchnorms = [((lin,), bn) for lin, bn in merges if not _is_faceapi(modules[bn], "Scale")]
    scales = [(lin, bn) for lin, bn in merges if _is_faceapi(modules[bn], "Scale")]
    if batchnorms:
        out.append(_exact_merge()(batchnorms))
    if scales:
        out.append(_scale_merge()(scales))
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
    if any(_is_faceapi(m, "ResidualBlock") or _is_faceapi(m, "DenseBlock") for m in model.modules()):

        def face_api_attributes(name: str, module: nn.Module) -> dict | None:
            if _is_faceapi(module, "ResidualBlock"):
                return {"forward": _residual_block_forward.__get__(module), "canonizer_sum": zennit.layer.Sum()}
            if _is_faceapi(module, "DenseBlock"):
                sums = {key: zennit.layer.Sum() for key in ("canonizer_sum", "canonizer_sum2", "canonizer_sum3")}
                return {"forward": _dense_block_forward.__get__(module), **sums}
            return None

        out.append(zennit.canonizers.AttributeCanonizer(face_api_attributes))
    return out


def _pass_through_hook() -> Any:
    """A Zennit hook for an affine preprocessing module ``y = A x + c``: relevance ``R_in = A^T (R_out / (A 1))``,
    each output element's relevance shared among the input elements it is made of by their weights in ``A`` (``A 1``
    by double backpropagation: the gradient ``A^T u`` is linear in ``u``). For a per-element map ``y = P(a * x + b)``
    (``P`` a permutation, e.g. a channel flip) that is ``P^T R_out``: unscaled, to the element it comes from; for a
    bilinear resize (non-negative weights summing to one) the sum is kept. Outputs with ``A 1 = 0`` (padding) drop
    their relevance."""
    base: Any = _zennit().core.Hook

    class PassThrough(base):
        def forward(self, module: nn.Module, input: tuple, output: torch.Tensor) -> None:
            self.stored_tensors["input"] = input

        def backward(self, module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
            x = self.stored_tensors["input"][0].detach().requires_grad_(True)
            with torch.enable_grad():
                y = module.forward(x)
                probe = torch.zeros_like(y, requires_grad=True)
                (transposed,) = torch.autograd.grad(y, x, grad_outputs=probe, create_graph=True)
                (weight_sum,) = torch.autograd.grad(transposed, probe, grad_outputs=torch.ones_like(x))
                share = torch.where(weight_sum != 0, grad_output[0] / torch.where(weight_sum != 0, weight_sum, 1), 0)
                (relevance,) = torch.autograd.grad(y, x, grad_outputs=share)
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
    maps = [(names, _pass_through_hook())] if names else []
    if isinstance(composite, str) and composite in SIGN_SPLIT:
        depthwise = _depthwise_convs(net)
        if depthwise:
            maps.append((depthwise, zennit.rules.Epsilon(epsilon=epsilon)))
    if not maps:
        return base
    return zennit.composites.MixedComposite([zennit.composites.NameMapComposite(maps), base])


def _depthwise_convs(net: nn.Module) -> tuple[str, ...]:
    """Names of the depthwise convolutions (``groups == in_channels > 1``) after the first Linear/Conv layer."""
    layers = [(name, m) for name, m in net.named_modules() if name and isinstance(m, _LINEAR)]
    return tuple(
        name
        for name, m in layers[1:]
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and 1 < m.groups == m.in_channels
    )


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

    Raises:
        ImportError: Zennit is not installed.
        ValueError: an unknown ``layer``, composite name or ``reduce``.
        IndexError: a unit out of range for ``layer``.
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
