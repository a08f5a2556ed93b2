"""Cross-checks with Captum, attributions for units, and the model-randomization sanity check.

* :func:`agreement`: our captured activations and unit input-gradients against Captum's
  ``LayerActivation`` and ``NeuronGradient`` (an independent implementation): a large difference
  means a hook, preprocessing or in-place bug that would make every picture wrong.
* :func:`neuron_attributions`: Captum's ``NeuronIntegratedGradients`` or ``NeuronGradient``
  (saliency) maps for one unit, with the integrated-gradients completeness error.
* :func:`randomization_check` (Adebayo et al. 2018): the Spearman rank correlation between the
  attributions of the trained model and of a copy whose weights are all re-initialized at once.
  A map that barely changes is explaining the input (edges), not the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.capture import Capture, frozen, get_layer, model_device

METHODS = ("ig", "saliency", "deeplift", "occlusion", "gradcam", "lrp")


@dataclass
class Agreement:
    """Largest absolute differences between our captured values and Captum's (:func:`agreement`).

    Attributes:
        activation_maxdiff: largest difference of the layer's activations.
        grad_maxdiff: largest difference of the units' input gradients.
    """

    activation_maxdiff: float
    grad_maxdiff: float

    def ok(self, tolerance: float = 1e-5) -> bool:
        """Whether both differences are within ``tolerance``.

        Args:
            tolerance: the largest accepted absolute difference.

        Returns:
            ``True`` when the activations and the gradients agree.
        """
        return self.activation_maxdiff <= tolerance and self.grad_maxdiff <= tolerance


@dataclass
class Attributions:
    """What :func:`neuron_attributions` returns.

    Attributes:
        maps: the attribution maps, shaped like the inputs (CPU).
        completeness: for integrated gradients, the relative completeness error per input; ``None`` for the other
            methods.
    """

    maps: torch.Tensor
    completeness: torch.Tensor | None


@dataclass
class RandomizationCheck:
    """Mean Spearman correlations of |attribution| maps (Adebayo et al. 2018), from :func:`randomization_check`.

    Attributes:
        randomized: trained model vs randomized model (low is good).
        same_model: trained vs trained, the reference for how similar two maps of one model are.
    """

    randomized: float
    same_model: float


def agreement(model: nn.Module, layer: str, inputs: torch.Tensor, units: list[int]) -> Agreement:
    """Max absolute differences between our and Captum's activations and unit input gradients.

    Args:
        model: the network (run frozen, in eval mode).
        layer: the layer name.
        inputs: the inputs, ``[N, ...]``.
        units: the units whose input gradients are compared (all units' activations are).

    Returns:
        The two largest differences.
    """
    from captum.attr import LayerActivation, NeuronGradient

    device = model_device(model)
    x = inputs.detach().to(device)
    module = get_layer(model, layer)
    with frozen(model), torch.enable_grad():
        with Capture(model, [layer]) as cap:
            ours = cap(x)[layer].detach()
        theirs = LayerActivation(model, module).attribute(x).detach()
        act_diff = float((ours - theirs).abs().max())
        grad_diff = 0.0
        for unit in units:
            with Capture(model, [layer]) as cap:
                xi = x.clone().requires_grad_(True)
                score = obj.unit(layer, unit)(cap(xi)) if ours.dim() == 2 else obj.channel(layer, unit)(cap(xi))
                (g_ours,) = torch.autograd.grad(score.sum(), xi)
            if ours.dim() == 2:
                g_theirs = NeuronGradient(model, module).attribute(x.clone(), neuron_selector=unit)
            else:  # a channel: Captum's selector may be a function of the layer output
                g_theirs = NeuronGradient(model, module).attribute(
                    x.clone(), neuron_selector=lambda out, u=unit: out[:, u].flatten(1).mean(1)
                )
            grad_diff = max(grad_diff, float((g_ours - g_theirs).abs().max()))
    return Agreement(act_diff, grad_diff)


def _unit_value(model: nn.Module, layer: str, unit: int, x: torch.Tensor) -> torch.Tensor:
    """The unit's value per input (conv layers: the channel mean, as our channel objective)."""
    with Capture(model, [layer]) as cap, torch.no_grad():
        a = cap(x)[layer]
    return a[:, unit] if a.dim() == 2 else a[:, unit].flatten(1).mean(1)


def neuron_attributions(
    model: nn.Module,
    layer: str,
    unit: int,
    inputs: torch.Tensor,
    method: str = "ig",
    n_steps: int = 64,
    internal_batch_size: int = 256,
    baseline: float = 0.0,
) -> Attributions:
    """Attribution maps of ``unit`` for ``inputs``, shaped like the inputs (Captum computes them).

    * ``ig``: integrated gradients from a constant ``baseline`` image; the result also holds the
      relative completeness error per input, ``|sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|``;
    * ``saliency``: the input gradient;
    * ``deeplift``: DeepLift (rescale rule) from the same baseline (needs ReLUs as modules);
    * ``occlusion``: the drop of the unit's value when a square patch is set to the baseline
      (patch about 1/7 of the image side, half-patch strides);
    * ``gradcam``: Grad-CAM at the unit's own (conv) layer, upsampled to the input size;
    * ``lrp``: layer-wise relevance propagation through Zennit (``EpsilonPlusFlat`` with canonizers), started at the
      unit (:func:`interp.optvis.lrp.lrp_attributions`; needs ``interp[eval]``).

    Args:
        model: the network (run frozen, in eval mode).
        layer: the unit's layer.
        unit: the unit (Linear) or channel (conv: its spatial mean) index.
        inputs: the inputs, ``[N, ...]``.
        method: one of :data:`METHODS`.
        n_steps: integration steps of ``ig``.
        internal_batch_size: inputs per forward pass of ``ig``.
        baseline: the constant baseline of ``ig``, ``deeplift`` and ``occlusion``.

    Returns:
        The maps (CPU) and, for ``ig``, the completeness errors.

    Raises:
        ValueError: an unknown method, Grad-CAM on a layer without spatial axes, or DeepLift on a model it
            cannot run on.
    """
    from captum.attr import NeuronGradient, NeuronIntegratedGradients

    device = model_device(model)
    x = inputs.detach().to(device)
    module = get_layer(model, layer)
    with frozen(model), torch.enable_grad():
        with Capture(model, [layer]) as cap, torch.no_grad():
            is_linear = cap(x[:1])[layer].dim() == 2
        selector = unit if is_linear else (lambda out, u=unit: out[:, u].flatten(1).mean(1))
        if method == "ig":
            base = torch.full_like(x, baseline)
            maps = NeuronIntegratedGradients(model, module).attribute(
                x, baselines=base, neuron_selector=selector, n_steps=n_steps, internal_batch_size=internal_batch_size
            )
            delta = _unit_value(model, layer, unit, x) - _unit_value(model, layer, unit, base)
            total = maps.flatten(1).sum(1)
            completeness = (total - delta).abs() / delta.abs().clamp(min=1e-12)
            return Attributions(maps.detach().cpu(), completeness.detach().cpu())
        if method == "saliency":
            maps = NeuronGradient(model, module).attribute(x.clone(), neuron_selector=selector)
            return Attributions(maps.detach().cpu(), None)
        if method == "deeplift":
            from captum.attr import NeuronDeepLift

            try:
                maps = NeuronDeepLift(model, module).attribute(
                    x.clone(), neuron_selector=selector, baselines=torch.full_like(x, baseline)
                )
            except (AssertionError, RuntimeError) as exc:
                raise ValueError(f"DeepLift cannot run on this model: {exc}") from None
            return Attributions(maps.detach().cpu(), None)
        if method == "occlusion":
            from captum.attr import Occlusion

            side = max(2, min(x.shape[-2:]) // 7)
            window = (x.shape[1], side, side)
            stride = (x.shape[1], max(1, side // 2), max(1, side // 2))
            maps = Occlusion(lambda batch: _unit_value(model, layer, unit, batch)).attribute(
                x, sliding_window_shapes=window, strides=stride, baselines=baseline
            )
            return Attributions(maps.detach().cpu(), None)
        if method == "gradcam":
            from captum.attr import LayerAttribution, LayerGradCam

            if is_linear:
                raise ValueError(f"Grad-CAM needs a conv layer with a spatial output; {layer} has none")

            def unit_value(batch: torch.Tensor) -> torch.Tensor:
                with Capture(model, [layer], stop=False, clone=False) as full:
                    return full(batch)[layer][:, unit].flatten(1).mean(1)

            cam = LayerGradCam(unit_value, module).attribute(x, relu_attributions=True)
            maps = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
            return Attributions(maps.expand(-1, x.shape[1], -1, -1).detach().cpu() / x.shape[1], None)
        if method == "lrp":
            from interp.optvis.lrp import lrp_attributions

            return Attributions(lrp_attributions(model, layer, unit, x).cpu(), None)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks of ``v`` (1-D) with ties given their average rank, as Spearman's rho needs."""
    values, inverse, counts = torch.unique(v, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average = ends - (counts.double() - 1) / 2
    return average[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two tensors of the same size (ties averaged).

    Args:
        a: values of any shape.
        b: values with as many elements.

    Returns:
        The correlation; 0.0 where either side is constant.
    """
    ra, rb = _average_ranks(a.flatten().double()), _average_ranks(b.flatten().double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def randomization_seed(seed: int) -> int:
    """The seed that :func:`randomized_copy` re-initializes with for ``seed``.

    A fixed 63-bit mix of it, not the caller's ``seed`` itself (a model built right after ``torch.manual_seed(seed)``
    and re-initialized from that same seed would get its original weights back).

    Args:
        seed: the caller's seed.

    Returns:
        A positive seed below ``2**63``.
    """
    return (int(seed) * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % (2**63 - 1) + 1


def _own_parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters(recurse=False)]


def randomized_copy(model: nn.Module, seed: int = 0, attempts: int = 4) -> nn.Module:
    """A copy of ``model`` with the weights of every layer re-initialized at once.

    The "all at once" variant of Adebayo et al.'s model randomization, by each layer's own ``reset_parameters``.
    The layers are reset in ``modules()`` order from one stream seeded with :func:`randomization_seed` ``(seed)``,
    not with ``seed`` itself (which would give back the weights of a model built right after
    ``torch.manual_seed(seed)``). A layer whose parameters still equal the original ones afterwards is reset again
    from the next seeds, up to ``attempts`` times: one whose reset is not random (a norm layer at its initial
    values) stays as it is. The global random stream is left as it was.

    Args:
        model: the network (not modified).
        seed: the randomization seed.
        attempts: how many more resets a layer whose parameters did not change gets.

    Returns:
        The randomized copy.
    """
    clone = copy.deepcopy(model)
    layers = [
        (m, _own_parameters(m))
        for m in clone.modules()
        if m is not clone and callable(getattr(m, "reset_parameters", None))
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(randomization_seed(seed))
        for module, _ in layers:
            module.reset_parameters()  # type: ignore[operator]
        for module, before in layers:
            for attempt in range(1, attempts + 1):
                after = list(module.parameters(recurse=False))
                if not before or any(not torch.equal(a.detach(), b) for a, b in zip(after, before)):
                    break
                torch.manual_seed(randomization_seed(seed + attempt * 7919))
                module.reset_parameters()  # type: ignore[operator]
    return clone


def randomization_check(
    model: nn.Module,
    layer: str,
    unit: int,
    inputs: torch.Tensor,
    method: str = "ig",
    seed: int = 0,
    randomized: nn.Module | None = None,
    trained: torch.Tensor | None = None,
    **kwargs: Any,
) -> RandomizationCheck:
    """Mean Spearman correlation over ``inputs`` of |attribution| maps of the trained and a randomized model.

    Trained vs randomized model (``randomized``), and, as a reference, two attributions of the trained model (IG with
    ``n_steps`` vs half as many; for the other methods, the maps against those of the inputs plus tiny noise)
    (``same_model``).

    Checking many units: pass the same ``randomized`` model (``randomized_copy(model)``) to each
    call, and the trained model's ``trained`` maps when they are already computed.

    Args:
        model: the trained network.
        layer: the unit's layer.
        unit: the unit index.
        inputs: the inputs, ``[N, ...]``.
        method: an attribution method of :data:`METHODS`.
        seed: seed of the randomization (when ``randomized`` is ``None``) and of the reference noise.
        randomized: a randomized copy of ``model``; ``None`` makes one with :func:`randomized_copy`.
        trained: the trained model's maps of ``unit``, or ``None`` to compute them.
        **kwargs: passed to :func:`neuron_attributions` (e.g. ``n_steps``).

    Returns:
        The two mean correlations.
    """
    if trained is None:
        trained = neuron_attributions(model, layer, unit, inputs, method=method, **kwargs).maps
    randomized = randomized if randomized is not None else randomized_copy(model, seed)
    random_maps = neuron_attributions(randomized, layer, unit, inputs, method=method, **kwargs).maps
    if method == "ig":
        steps = kwargs.get("n_steps", 64)
        other = neuron_attributions(
            model, layer, unit, inputs, method=method, **{**kwargs, "n_steps": max(2, steps // 2)}
        ).maps
    else:
        g = torch.Generator().manual_seed(seed)
        noisy = (inputs + 0.01 * torch.randn(inputs.shape, generator=g)).clamp(0, 1)
        other = neuron_attributions(model, layer, unit, noisy, method=method, **kwargs).maps

    def per(m1: torch.Tensor, m2: torch.Tensor) -> float:
        return sum(spearman(x.abs(), y.abs()) for x, y in zip(m1, m2)) / len(m1)

    return RandomizationCheck(per(trained, random_maps), per(trained, other))
