"""Reading layer outputs: one context manager used by every algorithm.

Layers are named as in ``model.named_modules()``. :class:`Capture` hooks only the requested
layers, clones what it keeps (an in-place op after the layer cannot change it), stops the forward
pass once every requested layer has fired (so nothing after the target layer runs), and removes
its hooks on exit, also on error.

Example::

    with capture(model, "dense_1") as cap:
        acts = cap(images)          # {"dense_1": tensor [N, 512]}
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class _StopForward(BaseException):
    """Raised by a hook to end the forward pass early (BaseException: model code rarely catches it)."""


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable layer name of ``model`` (``model.named_modules()`` without the root).

    Args:
        model: the network.

    Returns:
        The names, in ``named_modules()`` order.
    """
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``.

    Args:
        model: the network.
        name: a name from ``model.named_modules()`` (not the empty root name).

    Returns:
        The submodule.

    Raises:
        ValueError: an unknown name; the message lists the closest names.
    """
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise ValueError(
        f"unknown layer {name!r} in {type(model).__name__}.{hint} "
        f"List them all with interp.optvis.layer_names(model) ({len(names)} layers)."
    )


def layer_size(model: nn.Module, layer: str, example: torch.Tensor) -> tuple[int, ...]:
    """Shape of one item of ``layer``'s output for an ``example`` input batch.

    The model runs in eval mode (its mode is restored after): measuring never draws dropout masks (the random stream
    of a training run stays as it was) nor moves batch-norm statistics.

    Args:
        model: the network.
        layer: the layer name.
        example: an input batch, ``[N, ...]``.

    Returns:
        The output shape without the batch dimension.
    """
    with frozen(model), Capture(model, [layer]) as cap, torch.no_grad():
        return tuple(cap(example)[layer].shape[1:])


class Capture:
    """Context manager that records the outputs of ``layers`` during ``model`` forward passes.

    Args:
        model: any ``nn.Module``.
        layers: one name or several, as in ``model.named_modules()``.
        stop: end the forward pass as soon as every requested layer has produced its output.
        clone: keep a copy of each output (safe against in-place ops that follow the layer).
            Under ``torch.inference_mode`` a copy is still made when ``clone`` is true.

    Calling the object runs ``model(x)`` and returns ``{layer: output}``.
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str], stop: bool = True, clone: bool = True):
        self.model = model
        self.layers = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
        if not self.layers:
            raise ValueError("Capture needs at least one layer name")
        self.modules = {name: get_layer(model, name) for name in self.layers}
        self.stop = stop
        self.clone = clone
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if name not in self.outputs:
                self.outputs[name] = output.clone() if self.clone else output
            if self.stop and len(self.outputs) == len(self.layers):
                raise _StopForward

        return hook

    def __enter__(self) -> Capture:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (what leaving the ``with`` block does); calling it again does nothing."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self._handles:
            raise RuntimeError("Capture is not active: use it as `with Capture(...) as cap:`")
        self.outputs = {}
        try:
            self.model(x)
        except _StopForward:
            pass
        except RuntimeError as exc:
            if "shape" in str(exc) or "size" in str(exc):
                raise ValueError(
                    f"{type(self.model).__name__} cannot take an input of shape {tuple(x.shape)}"
                    f"{_expected_shape(self.model)}: {exc}"
                ) from exc
            raise
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise RuntimeError(f"layer(s) {missing} did not run in the forward pass of {type(self.model).__name__}")
        return dict(self.outputs)


def _expected_shape(model: nn.Module) -> str:
    example = getattr(model, "example_input_array", None)
    if isinstance(example, torch.Tensor):
        return f" (expected (N, {', '.join(map(str, example.shape[1:]))}), from model.example_input_array)"
    return ""


def expected_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The input shape without the batch dimension, from ``model.example_input_array``.

    Args:
        model: the network.

    Returns:
        ``(C, H, W)`` (or the shape of one item), or ``None`` when the model declares no example input.
    """
    example = getattr(model, "example_input_array", None)
    return tuple(example.shape[1:]) if isinstance(example, torch.Tensor) else None


def capture(model: nn.Module, layers: str | Sequence[str], stop: bool = True, clone: bool = True) -> Capture:
    """Shorthand for :class:`Capture`.

    Args:
        model: any ``nn.Module``.
        layers: one name or several, as in ``model.named_modules()``.
        stop: end the forward pass once every requested layer has run.
        clone: keep a copy of each output.

    Returns:
        The (not yet entered) context manager.
    """
    return Capture(model, layers, stop=stop, clone=clone)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer.

    Args:
        model: the network.

    Returns:
        That device; the CPU for a model with neither parameters nor buffers.
    """
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextlib.contextmanager
def frozen(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients inside; the previous mode and flags are restored after.

    Args:
        model: the network.
        eval_mode: also switch to eval mode (``False``: only the ``requires_grad`` flags change).

    Yields:
        ``model`` itself.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        if eval_mode:
            model.eval()
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
