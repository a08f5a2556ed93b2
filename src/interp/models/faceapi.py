"""Two trained face networks of face-api.js (``@vladmandic/face-api`` 1.7.15), ported to PyTorch.

* :class:`FaceRecognitionNet`: the face-recognition ResNet of dlib (Davis King), as ported to
  TensorFlow.js by face-api.js: a 150x150 face crop to a 128-D descriptor; faces of one person
  lie within about 0.6 (Euclidean) of each other.
* :class:`FaceExpressionNet`: seven expression logits (:attr:`FaceExpressionNet.class_names`)
  from a 112x112 face crop: a small DenseNet of depthwise separable convolutions.

Both read the published TensorFlow.js weights (``*-weights_manifest.json`` + ``.bin``) with the
strict reader of :mod:`interp.models.tfjs`, check their SHA-256 (:data:`FACE_API_SHA256`), and
compute what the package's JavaScript computes (``src/faceRecognitionNet/``,
``src/faceFeatureExtractor/``, ``src/faceExpressionNet/``), to about 1e-6: the test suite compares
them with outputs of the original JavaScript (``scripts/faceapi_reference.py`` makes that fixture).

Inputs are RGB images in [0, 1] shaped (N, 3, H, W). The first module, ``preprocess``
(:class:`FaceApiPreprocess`), does what face-api's ``NetInput.toBatchTensor`` does to a tensor:
a non-square image is padded with black to a square (centered), an image of another size is
resized to the net's size with TensorFlow's bilinear resize (``tf.image.resizeBilinear`` without
``alignCorners`` or half-pixel centers, which differs slightly from ``F.interpolate``), then the
mean RGB (122.782, 117.001, 104.298) is subtracted on the 0-255 scale and the result divided by
255. Give face crops (the JavaScript gets them from its detector and aligner); at the net's size
only the normalization happens.

The preprocessing and the convolution modules (:class:`FaceApiPreprocess`, :class:`Conv2dSame`,
:class:`SeparableConv2d`, :func:`tf_resize_bilinear`) live in :mod:`interp.models.faceapi_layers`; every name is
importable from here.

Every convolution is a real ``nn.Conv2d`` reachable through ``named_modules()``; depthwise separable
convolutions are two of them (``depthwise`` with ``groups=C``, ``pointwise`` 1x1). TensorFlow's
``same`` padding at stride 2 pads more at the bottom and right: :class:`Conv2dSame` does that.
The recognition net's per-channel scales (batch norm folded by dlib) are :class:`Scale` modules,
after the conv (which keeps its own tiny bias), so a canonizer can fold them into it.

Weights: ``make face-weights`` (``scripts/fetch_face_weights.py``) puts them into
``$INTERP_CACHE_DIR/face-api`` (``~/.cache/interp/face-api``); ``from_weights()`` looks there and
then in ``$INTERP_DATA_DIR/face-api``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.errors import DataNotFoundError
from interp.models.faceapi_layers import FACE_API_MEAN_RGB as FACE_API_MEAN_RGB  # re-exported
from interp.models.faceapi_layers import (
    Conv2dSame,
    FaceApiPreprocess,
    SeparableConv2d,
    _load,
)
from interp.models.faceapi_layers import tf_resize_bilinear as tf_resize_bilinear  # re-exported
from interp.models.tfjs import TfjsWeights

FACE_API_VERSION = "1.7.15"
"""Version of the npm package ``@vladmandic/face-api`` whose ``model/`` files these are."""

FACE_API_SHA256: dict[str, str] = {
    "face_expression_model.bin": "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
    "face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
    "face_expression_model-weights_manifest.json": "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
    "face_recognition_model-weights_manifest.json": "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
}
"""SHA-256 of the four published files (``model/`` of ``@vladmandic/face-api`` 1.7.15)."""

FETCH_COMMAND = "make face-weights"
CACHE_ENV = "INTERP_CACHE_DIR"
DATA_ENV = "INTERP_DATA_DIR"


def face_api_cache_dir() -> Path:
    """Where ``make face-weights`` puts the weights.

    Returns:
        ``$INTERP_CACHE_DIR/face-api`` if the variable is set, else ``~/.cache/interp/face-api``.
    """
    root = os.environ.get(CACHE_ENV)
    base = Path(root) if root else Path.home() / ".cache" / "interp"
    return base / "face-api"


def find_manifest(manifest_name: str, path: str | os.PathLike | None = None) -> Path:
    """Locate a face-api weights manifest.

    Args:
        manifest_name: the published manifest's file name, e.g.
            ``face_recognition_model-weights_manifest.json``.
        path: a folder holding it or a manifest file; ``None`` looks in
            :func:`face_api_cache_dir` and then in ``$INTERP_DATA_DIR/face-api``.

    Returns:
        The manifest file.

    Raises:
        DataNotFoundError: nothing found (the message names ``make face-weights``).
    """
    if path is not None:
        given = Path(path).expanduser()
        candidate = given / manifest_name if given.is_dir() else given
        if not candidate.is_file():
            raise DataNotFoundError(
                f"face-api weights not found: {candidate} does not exist (run `{FETCH_COMMAND}` to fetch them "
                f"into {face_api_cache_dir()})"
            )
        return candidate
    folders = [face_api_cache_dir()]
    data_root = os.environ.get(DATA_ENV)
    if data_root:
        folders.append(Path(data_root) / "face-api")
    for folder in folders:
        if (folder / manifest_name).is_file():
            return folder / manifest_name
    looked = ", ".join(str(f) for f in folders)
    raise DataNotFoundError(
        f"face-api weights {manifest_name} not found (looked in {looked}): run `{FETCH_COMMAND}` to fetch them, "
        f"or set {DATA_ENV} to a folder holding face-api/"
    )


class Scale(nn.Module):
    """Per-channel affine map ``x * weight + bias`` (a folded batch norm), for (N, C, H, W).

    Args:
        channels: number of channels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}"


def _resolve_and_open(manifest_name: str, path: str | os.PathLike | None, verify: bool) -> TfjsWeights:
    manifest = find_manifest(manifest_name, path)
    return TfjsWeights.open(manifest, FACE_API_SHA256 if verify else None)


# --------------------------------------------------------------------------------------------
# recognition: dlib's ResNet


class ConvScale(nn.Sequential):
    """``conv`` (with bias), ``scale`` (:class:`Scale`) and, unless ``relu=False``, ``relu``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: 1 (``same`` padding) or 2 (``valid``, as face-api's ``convDown``).
        relu: whether a ReLU follows.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = True):
        padding = kernel_size // 2 if stride == 1 else 0
        modules: dict[str, nn.Module] = {
            "conv": nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            "scale": Scale(out_channels),
        }
        if relu:
            modules["relu"] = nn.ReLU()
        super().__init__()
        for key, module in modules.items():
            self.add_module(key, module)

    def load_tfjs(self, weights: TfjsWeights, prefix: str) -> None:
        """Load ``{prefix}/conv/filters``, ``/conv/bias``, ``/scale/weights``, ``/scale/biases``.

        Args:
            weights: the opened manifest.
            prefix: the TensorFlow.js name of this layer.
        """
        conv, scale = self.conv, self.scale
        assert isinstance(conv, nn.Conv2d) and isinstance(scale, Scale)
        _load(weights, f"{prefix}/conv/filters", conv.weight, "conv")
        assert conv.bias is not None
        _load(weights, f"{prefix}/conv/bias", conv.bias, "vector")
        _load(weights, f"{prefix}/scale/weights", scale.weight, "vector")
        _load(weights, f"{prefix}/scale/biases", scale.bias, "vector")


class ResidualBlock(nn.Module):
    """face-api's ``residual`` (stride 1) or ``residualDown`` (``down=True``).

    ``out = relu(branch(x) + shortcut(x))`` with ``branch = conv1 (3x3 + scale + relu), conv2
    (3x3 + scale)``. Down blocks: ``conv1`` has stride 2 and ``valid`` padding; the shortcut is a
    2x2 average pool (``shortcut``) whose missing channels are zeros; when the branch is one pixel
    smaller (even input sizes) it gets a zero row at the bottom and a zero column at the right.

    Modules: ``conv1`` (``conv``, ``scale``, ``relu``), ``conv2`` (``conv``, ``scale``),
    ``shortcut`` (down blocks only), ``relu`` (the block's output).

    Args:
        in_channels: input channels.
        out_channels: output channels (``in_channels`` unless ``down``).
        down: a downsampling block.
    """

    def __init__(self, in_channels: int, out_channels: int, down: bool = False):
        super().__init__()
        if not down and in_channels != out_channels:
            raise ValueError("a stride-1 residual block keeps its channel count")
        self.down = bool(down)
        self.conv1 = ConvScale(in_channels, out_channels, 3, stride=2 if down else 1)
        self.conv2 = ConvScale(out_channels, out_channels, 3, relu=False)
        self.shortcut: nn.Module | None = nn.AvgPool2d(2, 2) if down else None
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        if self.shortcut is None:
            return self.relu(out + x)
        pooled = self.shortcut(x)
        if pooled.shape[1] != out.shape[1]:
            pooled = F.pad(pooled, (0, 0, 0, 0, 0, out.shape[1] - pooled.shape[1]))
        dh, dw = pooled.shape[2] - out.shape[2], pooled.shape[3] - out.shape[3]
        if dh or dw:
            out = F.pad(out, (0, dw, 0, dh))
        return self.relu(pooled + out)

    def load_tfjs(self, weights: TfjsWeights, prefix: str) -> None:
        """Load ``{prefix}/conv1/...`` and ``{prefix}/conv2/...``.

        Args:
            weights: the opened manifest.
            prefix: the TensorFlow.js name of this block.
        """
        self.conv1.load_tfjs(weights, f"{prefix}/conv1")
        self.conv2.load_tfjs(weights, f"{prefix}/conv2")


# (stage, TensorFlow.js names of its blocks, channels in, channels out)
_RECOGNITION_STAGES = (
    ("layer1", ("conv32_1", "conv32_2", "conv32_3"), 32, 32),
    ("layer2", ("conv64_down", "conv64_1", "conv64_2", "conv64_3"), 32, 64),
    ("layer3", ("conv128_down", "conv128_1", "conv128_2"), 64, 128),
    ("layer4", ("conv256_down", "conv256_1", "conv256_2", "conv256_down_out"), 128, 256),
)


class FaceApiWeights:
    """What both face-api networks share: building one with the published weights.

    A subclass names its manifest in ``tfjs_manifest`` and loads an opened one in ``load_tfjs``.
    """

    tfjs_manifest = ""

    def load_tfjs(self, weights: TfjsWeights) -> None:  # pragma: no cover - both networks override it
        """Load every tensor of an opened manifest.

        Args:
            weights: the opened manifest.
        """
        raise NotImplementedError

    @classmethod
    def from_weights(cls, path: str | os.PathLike | None = None, verify: bool = True) -> Any:
        """The network with the published face-api weights, in eval mode.

        Args:
            path: a folder holding the network's ``*-weights_manifest.json`` (``tfjs_manifest``, and its
                ``.bin``) or the manifest itself; ``None`` looks in ``$INTERP_CACHE_DIR/face-api``
                (``~/.cache/interp/face-api``), then ``$INTERP_DATA_DIR/face-api``.
            verify: check both files against :data:`FACE_API_SHA256`.

        Returns:
            The loaded network.

        Raises:
            DataNotFoundError: no weights found (run ``make face-weights``).
            WeightsFormatError: a file that is corrupt, truncated, tampered with or does not fit.
        """
        net = cls()
        weights = _resolve_and_open(cls.tfjs_manifest, path, verify)
        net.load_tfjs(weights)
        return net.eval()  # type: ignore[attr-defined]


class FaceRecognitionNet(FaceApiWeights, L.LightningModule):
    """dlib's face-recognition ResNet (face-api.js port): face crops to 128-D descriptors.

    Modules, in forward order (sizes at the 150x150 input):

    * ``preprocess``: :class:`FaceApiPreprocess` (150);
    * ``stem``: ``conv`` 7x7/2 ``valid`` (3->32), ``scale``, ``relu``, ``pool`` (max 3x3/2 ``valid``):
      35x35;
    * ``layer1``: 3 residual blocks of 32 channels (35x35);
    * ``layer2``: a down block to 64 channels and 3 blocks (17x17);
    * ``layer3``: a down block to 128 channels and 2 blocks (8x8);
    * ``layer4``: a down block to 256 channels (4x4: the shortcut pool is 4x4, the branch 3x3 plus
      zeros), 2 blocks, and the last down block (``conv256_down_out``; 2x2);
    * ``avgpool`` (global mean), ``fc``: 256 -> 128, no bias.

    Blocks are :class:`ResidualBlock`; ``layer2.0.conv1.conv`` is a conv, ``layer2.0.conv1.scale``
    its folded batch norm. Build it with :meth:`from_weights`; the constructor gives random
    weights. ``forward`` returns the descriptors, not normalized (as the JavaScript does).
    """

    input_size = 150
    tfjs_manifest = "face_recognition_model-weights_manifest.json"
    weights_info: str | None = None
    """Where the weights came from (set by :func:`face_recognition` / :func:`face_expression`)."""

    def __init__(self) -> None:
        super().__init__()
        self.preprocess = FaceApiPreprocess(self.input_size)
        self.stem = ConvScale(3, 32, 7, stride=2)
        self.stem.add_module("pool", nn.MaxPool2d(3, 2))
        for stage, names, cin, cout in _RECOGNITION_STAGES:
            blocks = [
                ResidualBlock(cin if i == 0 else cout, cout, down=name.startswith(f"conv{cout}_down"))
                for i, name in enumerate(names)
            ]
            self.add_module(stage, nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, 128, bias=False)
        self.example_input_array = torch.zeros(1, 3, self.input_size, self.input_size)
        self.default_layer = "layer3"
        self.eval()

    def load_tfjs(self, weights: TfjsWeights) -> None:
        """Load every tensor of the face-api manifest (strictly: all used, shapes checked).

        Args:
            weights: the opened manifest.
        """
        self.stem.load_tfjs(weights, "conv32_down")
        for stage, names, _, _ in _RECOGNITION_STAGES:
            layer = self.get_submodule(stage)
            for block, name in zip(layer, names):
                block.load_tfjs(weights, name)
        _load(weights, "fc", self.fc.weight, "dense")
        weights.finish()

    def forward_features(self, x: Tensor) -> Tensor:
        """The layer4 feature map (N, 256, 2, 2) at a 150 input.

        Args:
            x: RGB images in [0, 1], (N, 3, H, W).

        Returns:
            The feature map.
        """
        x = self.stem(self.preprocess(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        """Face descriptors (N, 128).

        Args:
            x: RGB face crops in [0, 1], (N, 3, H, W); 150x150 is used as it is.

        Returns:
            The descriptors (not normalized; compare them with the Euclidean distance).
        """
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))

    def predict_step(self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """``{"descriptor": (N, 128)}`` for an image batch (or a tuple whose first item is one)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return {"descriptor": self(x)}


# --------------------------------------------------------------------------------------------
# expressions: face-api's FaceFeatureExtractor + a linear classifier


class DenseBlock(nn.Module):
    """face-api's ``denseBlock4``: four convolutions whose outputs are summed densely.

    ``out1 = relu0(conv0(x))`` (stride 2: a 3x3 conv for the first block, else separable);
    ``out2 = conv1(out1)``; ``out3 = conv2(relu1(out1 + out2))``;
    ``out4 = conv3(relu2(out1 + out2 + out3))``; the output is ``relu3(out1 + out2 + out3 + out4)``.
    ``conv1``..``conv3`` are :class:`SeparableConv2d` (stride 1), all convs have biases, ReLUs are
    separate modules (each fires once a forward).

    Args:
        in_channels: input channels.
        out_channels: channels of every convolution's output.
        first: the network's first block (a regular 3x3 ``conv0``).
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False):
        super().__init__()
        self.first = bool(first)
        self.conv0: nn.Module = (
            Conv2dSame(in_channels, out_channels, 3, stride=2)
            if first
            else SeparableConv2d(in_channels, out_channels, stride=2)
        )
        self.relu0 = nn.ReLU()
        self.conv1 = SeparableConv2d(out_channels, out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = SeparableConv2d(out_channels, out_channels)
        self.relu2 = nn.ReLU()
        self.conv3 = SeparableConv2d(out_channels, out_channels)
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.relu0(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(self.relu1(out1 + out2))
        out4 = self.conv3(self.relu2(out1 + (out2 + out3)))
        return self.relu3(out1 + (out2 + (out3 + out4)))

    def load_tfjs(self, weights: TfjsWeights, prefix: str) -> None:
        """Load ``{prefix}/conv0`` .. ``{prefix}/conv3``.

        Args:
            weights: the opened manifest.
            prefix: the TensorFlow.js name of this block.
        """
        for index in range(4):
            conv = self.get_submodule(f"conv{index}")
            name = f"{prefix}/conv{index}"
            if isinstance(conv, SeparableConv2d):
                _load(weights, f"{name}/depthwise_filter", conv.depthwise.weight, "depthwise")
                _load(weights, f"{name}/pointwise_filter", conv.pointwise.weight, "conv")
                bias = conv.pointwise.bias
            else:
                assert isinstance(conv, nn.Conv2d)
                _load(weights, f"{name}/filters", conv.weight, "conv")
                bias = conv.bias
            assert bias is not None
            _load(weights, f"{name}/bias", bias, "vector")


class FaceExpressionNet(FaceApiWeights, L.LightningModule):
    """face-api's expression classifier: 112x112 face crops to 7 expression logits.

    Modules, in forward order (sizes at the 112x112 input): ``preprocess``
    (:class:`FaceApiPreprocess`, 112), ``dense0`` (3->32, 56x56), ``dense1`` (64, 28x28),
    ``dense2`` (128, 14x14), ``dense3`` (256, 7x7), each a :class:`DenseBlock`; ``pool``
    (average 7x7/2 ``valid``: 1x1), ``fc`` (256 -> 7). ``forward`` returns logits; the JavaScript
    reports their softmax (:meth:`predict_proba`), in the order of :attr:`class_names`.
    """

    input_size = 112
    tfjs_manifest = "face_expression_model-weights_manifest.json"
    weights_info: str | None = None
    """Where the weights came from (set by :func:`face_recognition` / :func:`face_expression`)."""
    class_names = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")

    def __init__(self) -> None:
        super().__init__()
        self.preprocess = FaceApiPreprocess(self.input_size)
        self.dense0 = DenseBlock(3, 32, first=True)
        self.dense1 = DenseBlock(32, 64)
        self.dense2 = DenseBlock(64, 128)
        self.dense3 = DenseBlock(128, 256)
        self.pool = nn.AvgPool2d(7, stride=2)
        self.fc = nn.Linear(256, len(self.class_names))
        self.example_input_array = torch.zeros(1, 3, self.input_size, self.input_size)
        self.default_layer = "dense3"
        self.eval()

    def load_tfjs(self, weights: TfjsWeights) -> None:
        """Load every tensor of the face-api manifest (strictly: all used, shapes checked).

        Args:
            weights: the opened manifest.
        """
        for index in range(4):
            block = self.get_submodule(f"dense{index}")
            assert isinstance(block, DenseBlock)
            block.load_tfjs(weights, f"dense{index}")
        _load(weights, "fc/weights", self.fc.weight, "dense")
        _load(weights, "fc/bias", self.fc.bias, "vector")
        weights.finish()

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled 256-D features (N, 256) that ``fc`` reads.

        Args:
            x: RGB images in [0, 1], (N, 3, H, W).

        Returns:
            The features.
        """
        x = self.dense3(self.dense2(self.dense1(self.dense0(self.preprocess(x)))))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """Expression logits (N, 7), in the order of :attr:`class_names`.

        Args:
            x: RGB face crops in [0, 1], (N, 3, H, W); 112x112 is used as it is.

        Returns:
            The logits.
        """
        return self.fc(self.forward_features(x))

    def predict_proba(self, x: Tensor) -> Tensor:
        """Expression probabilities (N, 7): the softmax that face-api reports.

        Args:
            x: RGB face crops in [0, 1], (N, 3, H, W).

        Returns:
            The probabilities.
        """
        return torch.softmax(self(x), dim=1)

    def predict(self, x: Tensor) -> list[dict[str, float]]:
        """Expression probabilities by name, one dict per image (as face-api's ``predictExpressions``).

        Args:
            x: RGB face crops in [0, 1], (N, 3, H, W).

        Returns:
            ``[{"neutral": p, "happy": p, ...}, ...]``.
        """
        probs = self.predict_proba(x).detach().cpu().tolist()
        return [dict(zip(self.class_names, row)) for row in probs]

    def predict_step(self, batch: Any, batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """``{"logits": (N, 7), "probs": (N, 7)}`` for an image batch (or a tuple starting with one)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = self(x)
        return {"logits": logits, "probs": torch.softmax(logits, dim=1)}


# --------------------------------------------------------------------------------------------
# factories for configs (``_target_``)


def _weights_info(manifest_name: str, path: str | os.PathLike | None) -> str:
    return f"face-api.js weights (@vladmandic/face-api {FACE_API_VERSION}), {find_manifest(manifest_name, path)}"


def face_recognition(weights: str | os.PathLike | None = None, resize: bool = True) -> FaceRecognitionNet:
    """:meth:`FaceRecognitionNet.from_weights` for configs (``_target_``), with ``weights_info``.

    Args:
        weights: a folder holding the face-api files or the manifest; ``None``: the default lookup
            (``$INTERP_CACHE_DIR/face-api``, ``~/.cache/interp/face-api``, ``$INTERP_DATA_DIR/face-api``).
        resize: ``False``: photos are not padded and resized to 150 px, only normalized (see
            :class:`FaceApiPreprocess`), so DeepDream works at the photo's own resolution.

    Returns:
        The loaded network, in eval mode.
    """
    net = FaceRecognitionNet.from_weights(weights)
    net.preprocess.resize = bool(resize)
    net.weights_info = _weights_info(FaceRecognitionNet.tfjs_manifest, weights)
    return net


def face_expression(weights: str | os.PathLike | None = None) -> FaceExpressionNet:
    """:meth:`FaceExpressionNet.from_weights` for configs (``_target_``), with ``weights_info``.

    Args:
        weights: as for :func:`face_recognition`.

    Returns:
        The loaded network, in eval mode.
    """
    net = FaceExpressionNet.from_weights(weights)
    net.weights_info = _weights_info(FaceExpressionNet.tfjs_manifest, weights)
    return net
