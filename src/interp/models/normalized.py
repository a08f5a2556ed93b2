"""Put a model's input normalization in front of it, so it takes images in [0, 1].

Every algorithm of this library works on images in [0, 1] and expects the model to carry its own
preprocessing. Models from elsewhere (torchvision's classifiers, most pretrained networks) expect
normalized inputs instead; :class:`Normalized` wraps such a model::

    from torchvision.models import resnet50
    model = Normalized.imagenet(resnet50(weights=...))
    render(model, obj.channel("model.layer3", 7))      # layer names gain the prefix "model."

The wrapped model is the submodule ``model``, so its layers are named ``model.<name>`` in
``named_modules()`` (``layer3`` becomes ``model.layer3``); the normalization itself has no module
of its own (its statistics are the buffers ``mean`` and ``std``, which follow ``.to()``).

:func:`looks_like_torchvision_classifier` tells whether a model is an unwrapped torchvision
classifier, which almost certainly expects ImageNet-normalized inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalized", "looks_like_torchvision_classifier"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalized(nn.Module):
    """``model((x - mean) / std)`` for images ``x`` in [0, 1], shaped ``[N, C, H, W]``.

    Args:
        model: the network that expects normalized inputs. It stays the same object: it is the
            submodule ``model``, and its layers are named ``model.<name>``.
        mean: per-channel mean (``C`` values, or one for all channels).
        std: per-channel standard deviation (same length as ``mean``, all > 0).
    """

    mean: torch.Tensor  # [1, C, 1, 1] buffers
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float] | float, std: Sequence[float] | float):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"mean has {mean_t.numel()} values but std has {std_t.numel()}")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1))
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1))
        self.model = model

    @classmethod
    def imagenet(cls, model: nn.Module) -> Normalized:
        """``model`` behind the ImageNet statistics (torchvision's classifiers, most pretrained CNNs).

        Args:
            model: the network, which expects ImageNet-normalized inputs.

        Returns:
            The wrapped model, which takes images in [0, 1].
        """
        return cls(model, IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, x: torch.Tensor, *args, **kwargs):
        return self.model((x - self.mean) / self.std, *args, **kwargs)

    def extra_repr(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"
        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"


# torchvision model families whose inputs are not ImageNet-normalized images to classify.
_NOT_IMAGENET_CLASSIFIERS = (".detection", ".segmentation", ".optical_flow", ".video")


def looks_like_torchvision_classifier(model: nn.Module) -> bool:
    """True for an unwrapped torchvision image classifier (ResNet, VGG, ViT, ...).

    Such a model expects ImageNet-normalized inputs, while this library feeds images in [0, 1]:
    wrap it with :meth:`Normalized.imagenet`. False for a :class:`Normalized` model, for
    torchvision's detection, segmentation, video and optical-flow models, and for other models.
    Needs no torchvision import: it looks at where the model's class is defined.

    Args:
        model: the network.

    Returns:
        Whether it looks like such a classifier.
    """
    if isinstance(model, Normalized):
        return False
    module = type(model).__module__ or ""
    if not module.startswith("torchvision.models."):
        return False
    return not any(part in module for part in _NOT_IMAGENET_CLASSIFIERS)
