"""The VGGFace2 ResNet-50 (Cao et al., 2018) as a plain module and as a LightningModule.

The authors trained a Caffe ResNet-50 (v1) for 8631 identities. It differs from
``torchvision.models.resnet50`` in two places that change what it computes, though not the
shapes or names of its weights:

* in a downsampling bottleneck the stride 2 sits on the first 1x1 conv, not on the 3x3 conv;
* the stem max-pool has kernel 3, stride 2, no padding and ``ceil_mode=True`` (Caffe rounding).

Every conv is bias-free and every BatchNorm has eps 1e-5. The weights keep torchvision's names
(``conv1``, ``bn1``, ``layer3.2.conv1``, ``layer4.0.downsample.0``, ``fc``), so the published
cydonia999 ``.pkl`` files load one to one, and the layers users hook are the names of
``named_modules()``: ``layer3`` (the usual DeepDream layer), ``layer4.2``, ``layer3.5.relu3``.

The model takes RGB images in [0, 1] shaped (N, 3, H, W). Its first module, ``preprocess``,
turns them into what the Caffe network expects (0-255, channel order of the weights, mean
subtracted), so no interpretation algorithm needs to know about means or BGR.

Two classes share the architecture:

* :class:`VGGFace2ResNet50` (``nn.Module``): the network.
* :class:`FaceResNet50`: the same class also made a ``LightningModule`` (it inherits from
  both), so its layers have the same simple names: ``dict(FaceResNet50(...).named_modules())``
  holds ``"layer3"``, not ``"net.layer3"``. It loads the published weights by file name.

Weight files are read by :mod:`interp.models.vggface2_weights`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.models.vggface2_weights import ACCEPTED_WEIGHTS_HELP, WeightsError, WeightsInfo, load_into

VGGFACE2_NUM_CLASSES = 8631
"""Identities of the VGGFace2 training split, in ``identity_meta.csv`` order (``Flag == 1`` rows)."""

VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
"""Per-channel mean of the training images on the 0-255 scale, in B, G, R order."""

CHANNEL_ORDERS = ("BGR", "RGB")

# (planes, blocks, stride of the first block) of the four stages layer1..layer4.
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def _check_channel_order(channel_order: str) -> str:
    order = str(channel_order).upper()
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {channel_order!r}")
    return order


class CaffePreprocess(nn.Module):
    """RGB in [0, 1] -> the Caffe input: 0-255, channels in the weights' order, mean subtracted.

    ``channel_order`` is the order the *weights* expect: ``"BGR"`` for the authors' Caffe
    models and the cydonia999 ``.pkl`` files, ``"RGB"`` for Samuel Albanie's DAG ``.pth``
    conversions. There is no division by a standard deviation. The mean is a buffer (it follows
    ``.to()``) but is not saved in the ``state_dict``, which stays the plain set of weight
    tensors of the published files.

    Args:
        channel_order: ``"BGR"`` or ``"RGB"``, the order the weights expect.
        mean_bgr: the mean B, G, R on the 0-255 scale.
        scale: the factor from [0, 1] to the network's scale.

    Raises:
        ValueError: an unknown channel order.
    """

    mean_bgr: torch.Tensor
    mean: torch.Tensor

    def __init__(self, channel_order: str = "BGR", mean_bgr=VGGFACE2_MEAN_BGR, scale: float = 255.0):
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("mean_bgr", torch.tensor(mean_bgr, dtype=torch.float32), persistent=False)
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.channel_order = "BGR"
        self.set_channel_order(channel_order)

    def set_channel_order(self, channel_order: str) -> None:
        """Switch the channel order fed to the network (and the order of the mean with it).

        Args:
            channel_order: ``"BGR"`` or ``"RGB"``.

        Raises:
            ValueError: an unknown channel order.
        """
        order = _check_channel_order(channel_order)
        mean = self.mean_bgr if order == "BGR" else self.mean_bgr.flip(0)
        self.mean.copy_(mean.reshape(1, 3, 1, 1))
        self.channel_order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images shaped (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        x = x * self.scale
        if self.channel_order == "BGR":
            x = x.flip(1)
        return x - self.mean

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Map a network input back to RGB in [0, 1] (no clamping).

        Args:
            y: network inputs, (N, 3, H, W).

        Returns:
            The RGB images.
        """
        x = y + self.mean
        if self.channel_order == "BGR":
            x = x.flip(1)
        return x / self.scale

    def extra_repr(self) -> str:
        mean = ", ".join(f"{m:.4f}" for m in self.mean.flatten().tolist())
        return f"channel_order={self.channel_order}, scale={self.scale:g}, mean=({mean})"


class Bottleneck(nn.Module):
    """Caffe ResNet v1 bottleneck: 1x1 reduce (carries the stride), 3x3, 1x1 increase, add, ReLU.

    Each ReLU is its own (not in-place) module, so ``relu1``, ``relu2`` and ``relu3`` (after the
    residual add, i.e. the block output) are clean hook points that fire once per forward.

    Args:
        in_channels: input channels.
        planes: channels of the 1x1 reduce and the 3x3 conv; the output has ``4 * planes``.
        stride: the stride of the first 1x1 convolution.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=1e-5)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=1e-5)
        self.relu3 = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + shortcut)


def _make_stage(in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(in_channels, planes, stride)]
    for _ in range(1, blocks):
        layers.append(Bottleneck(planes * Bottleneck.expansion, planes))
    return nn.Sequential(*layers)


class VGGFace2ResNet50(nn.Module):
    """The Caffe ResNet-50 of VGGFace2, taking RGB images in [0, 1]: a plain ``nn.Module``
    (:class:`FaceResNet50` is the LightningModule that loads the published weights).

    Modules, in forward order: ``preprocess``, ``conv1`` (7x7/2), ``bn1``, ``relu``, ``maxpool``
    (3x3/2, ceil), ``layer1`` .. ``layer4`` (3, 4, 6, 3 bottlenecks; 56, 28, 14 and 7 pixels
    wide at a 224 input), ``avgpool``, ``fc``.

    The head pools with ``AdaptiveAvgPool2d(1)``. At a 224 input layer4 is 7x7, where this equals
    the original ``AvgPool2d(7, stride=1)`` exactly; unlike it, it also works at other input
    sizes (octaves of DeepDream, non-square photos).

    Args:
        num_classes: outputs of ``fc`` (8631 identities for the published weights).
        channel_order: channel order the weights expect (``"BGR"`` for the Caffe convention; the
            weight loader sets it to match the file it loads).
        include_top: when false, ``forward`` returns the 2048-d pooled embedding instead of
            logits. ``fc`` is built either way, so the published files still load strictly.
    """

    # the four stages, registered by name in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        num_classes: int = VGGFACE2_NUM_CLASSES,
        channel_order: str = "BGR",
        include_top: bool = True,
    ):
        super().__init__()
        self.num_classes = int(num_classes)
        self.include_top = bool(include_top)
        self.preprocess = CaffePreprocess(channel_order)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        in_channels = 64
        for index, (planes, blocks, stride) in enumerate(_STAGES, start=1):
            self.add_module(f"layer{index}", _make_stage(in_channels, planes, blocks, stride))
            in_channels = planes * Bottleneck.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, self.num_classes)
        self.reset_parameters()

    @property
    def channel_order(self) -> str:
        """Channel order the weights expect (the input is RGB in [0, 1] regardless)."""
        return self.preprocess.channel_order

    def reset_parameters(self) -> None:
        """He initialization (the paper's from-scratch setting): random, reproducible under a seed."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer4 feature map (7x7 at a 224 input).

        Args:
            x: RGB images in [0, 1], ``[N, 3, H, W]``.

        Returns:
            The feature map, ``[N, 2048, h, w]``.
        """
        x = self.preprocess(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-d pooled descriptor before ``fc`` (``pool5``), not normalized.

        Args:
            x: RGB images in [0, 1], ``[N, 3, H, W]``.

        Returns:
            The descriptors, ``[N, 2048]``.
        """
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``, or the 2048-d embedding when ``include_top`` is false."""
        features = self.embed(x)
        return self.fc(features) if self.include_top else features


class FaceResNet50(VGGFace2ResNet50, L.LightningModule):
    """VGGFace2 ResNet-50 as a LightningModule, with the published weights loaded from a file.

    The class inherits the network from :class:`VGGFace2ResNet50` (and is an instance of it),
    so every layer sits at the top level: ``layer3``, ``layer4.2``, ``fc`` are names of
    ``named_modules()`` here exactly as in the plain module; ``forward`` returns logits.

    Args:
        weights: path to a weight file (see :func:`interp.models.vggface2_weights.load_into`
            for the formats), or ``"random"`` for explicitly random (He-initialized) weights.
            There is no silent default: ``None`` raises a
            :class:`~interp.models.vggface2_weights.WeightsError` that says which files work
            and where they are published.
        num_classes: outputs of ``fc``; must match the file (8631 for the published weights).
        include_top: as in :class:`VGGFace2ResNet50`.

    The model starts in eval mode (BatchNorm uses the published running statistics). A
    Lightning checkpoint stores the channel order next to the weights; reload it with
    ``FaceResNet50.load_from_checkpoint(path, weights="random")`` so the original weight file
    is not read again, or pass the checkpoint itself as ``weights``.
    """

    if TYPE_CHECKING:
        # LightningModule is untyped for mypy (follow_imports = "skip"), so without this mypy looks the
        # method up through nn.Module.__getattr__ (Tensor | Module) of the first base.
        def save_hyperparameters(self, *args: Any, **kwargs: Any) -> None: ...

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        num_classes: int = VGGFACE2_NUM_CLASSES,
        include_top: bool = True,
    ):
        if weights is None:
            raise WeightsError(f"FaceResNet50 needs weights. {ACCEPTED_WEIGHTS_HELP}")
        super().__init__(num_classes=num_classes, include_top=include_top)
        weights = os.fspath(weights)
        self.save_hyperparameters(
            {"weights": weights, "num_classes": int(num_classes), "include_top": bool(include_top)}
        )
        self.random_weights = weights == "random"
        self.example_input_array = torch.zeros(1, 3, 224, 224)
        self.default_layer = "layer3"
        self.weights_info: WeightsInfo | None = None
        if not self.random_weights:
            self.weights_info = load_into(self, weights)
        self.eval()

    def predict_step(self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """``{"logits": [N, num_classes], "embedding": [N, 2048] L2-normalized}``.

        ``batch`` is an image tensor or a tuple whose first item is one (as
        :class:`interp.data.images.ImageFolderDataset` yields).
        """
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        features = self.embed(x)
        return {"logits": self.fc(features), "embedding": F.normalize(features, dim=1)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The preprocessing buffers are not in the state_dict; keep the channel order with it.
        checkpoint["vggface2_channel_order"] = self.channel_order

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "vggface2_channel_order" in checkpoint:
            self.preprocess.set_channel_order(checkpoint["vggface2_channel_order"])
