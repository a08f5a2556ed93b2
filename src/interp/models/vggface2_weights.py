"""Read the published VGGFace2 ResNet-50 weight files, safely, into torchvision-style names.

Accepted files (sniffed from their first bytes, not from their names):

* cydonia999/VGGFace2-pytorch ``resnet50_ft_weight.pkl`` / ``resnet50_scratch_weight.pkl``: a raw
  (Python 2) pickle of ``{name: numpy.float32 array}`` in torchvision names, for BGR input. It is
  read with a restricted unpickler that can only rebuild numpy arrays and dicts; any other
  global in the file (``os.system``, ``builtins.eval``...) is refused with
  :class:`UnsafePickleError` before anything in it runs.
* Samuel Albanie's pytorch-mcn conversions ``resnet50_ft_dag.pth`` / ``resnet50_scratch_dag.pth``:
  a ``torch.save`` of an ``OrderedDict`` in MatConvNet "DAG" names (``conv1_7x7_s2``,
  ``conv2_1_1x1_reduce_bn``, ``conv3_1_1x1_proj``, ``classifier`` as a 1x1 conv), for RGB input.
  Both the legacy and the zip ``torch.save`` containers work. The MMdnn naming of the official
  ox-vgg tarballs' weights (``classifier_1`` as a Linear) is mapped too, when saved as a state dict.
* A file written by :func:`save_weights` (``{"state_dict": ..., "channel_order": ...}``), a
  Lightning checkpoint of :class:`~interp.models.vggface2.FaceResNet50`, or a plain
  ``torch.save(model.state_dict())`` of this model. A plain state dict in torchvision names is
  taken to be in the Caffe (BGR) convention, which is what a default model holds (see below).

Torch files are read with ``torch.load(weights_only=True)``; whole pickled modules (the MMdnn
``KitModel`` files) are refused. Keras HDF5 files are recognized and refused with a clear message.

Channel order: the published files disagree (BGR for the Caffe/cydonia files, RGB for DAG, whose
conv1 filters were flipped during the MatConvNet import). :func:`load_into` converts the weights
to the order the model declares (``model.preprocess.channel_order``, BGR by default) by flipping
conv1's input channels, so a model's ``state_dict()`` always means the same thing and can be
saved and reloaded without metadata; either way the model takes RGB images in [0, 1].

Every load is strict: missing, unexpected and mis-shaped tensors are listed in one error, and
nothing is silently left random. ``num_batches_tracked`` (absent from the published files) is
ignored in files and filled with zeros.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from interp.errors import InterpError

ACCEPTED_WEIGHTS_HELP = (
    "Accepted weight files: resnet50_ft_weight.pkl or resnet50_scratch_weight.pkl (the pickles of "
    "the cydonia999/VGGFace2-pytorch GitHub project, linked from its README); resnet50_ft_dag.pth or "
    "resnet50_scratch_dag.pth (Samuel Albanie's pytorch-mcn conversions, listed on his models page "
    "on the Oxford VGG (robots.ox.ac.uk) site); or a state dict saved from this model (save_weights, "
    "torch.save(model.state_dict()), or a FaceResNet50 checkpoint). The original models come from the "
    "VGGFace2 authors (ox-vgg/vgg_face2 on GitHub). Use weights='random' for random weights."
)

TORCH_LEGACY_MAGIC = 119547037146038801333356
"""First object pickled by a legacy (non-zip) ``torch.save`` file."""

_CONV1 = "conv1.weight"


class WeightsError(InterpError, ValueError):
    """A weight file is missing, unreadable, of an unknown format, or does not fit the model."""


class UnsafePickleError(WeightsError):
    """A pickle names a global that a weight file has no reason to contain; nothing was run."""


@dataclass(frozen=True)
class WeightsInfo:
    """What :func:`load_into` loaded.

    Attributes:
        path: the weight file.
        fmt: its container and naming scheme (as :func:`load_vggface2_weights` names them).
        file_channel_order: the input channel order the file's weights expect (``"BGR"`` or ``"RGB"``).
        num_tensors: number of tensors loaded.
    """

    path: str
    fmt: str
    file_channel_order: str
    num_tensors: int


# --- reading files ------------------------------------------------------------------------------

# (module, name) pairs a numpy weight pickle may name; numpy>=2 spells numpy.core as numpy._core.
_SAFE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


def _numpy_core_name(module: str) -> str:
    if module == "numpy.core" or module.startswith("numpy.core."):
        return "numpy._core" + module[len("numpy.core") :]
    return module


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dicts and plain values; refuses every other global."""

    def find_class(self, module: str, name: str):
        module = _numpy_core_name(module)
        if (module, name) not in _SAFE_GLOBALS:
            raise UnsafePickleError(f"refusing to load {module}.{name} from a pickle: a weight file holds only arrays")
        if module.startswith("numpy._core") and not hasattr(np, "_core"):  # numpy < 2
            module = "numpy.core" + module[len("numpy._core") :]
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing a pickle with persistent ids outside a torch file")


# First byte of a pickled dict: PROTO (protocol >= 2), MARK (protocol 0) or EMPTY_DICT (protocol 1).
_PICKLE_STARTS = frozenset(b"\x80(}")


def _read_raw_pickle(path: Path, data: bytes):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}. {ACCEPTED_WEIGHTS_HELP}") from None
    except Exception as e:  # truncated or corrupt streams raise many types
        raise WeightsError(f"{path}: not a readable weight file (corrupt or truncated pickle: {e})") from None


def _torch_load(path: Path, container: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(
            f"{path}: refused by torch.load(weights_only=True) ({str(e).splitlines()[0]}). Whole "
            f"pickled modules (such as the MMdnn KitModel files) and arbitrary objects are not "
            f"loaded. {ACCEPTED_WEIGHTS_HELP}"
        ) from None
    except Exception as e:
        raise WeightsError(f"{path}: not a readable {container} torch file (corrupt or truncated: {e})") from None


def _read_file(path: Path) -> tuple[object, str]:
    """Return (the unpickled object, container name)."""
    if not path.exists():
        raise WeightsError(f"weight file not found: {path}. {ACCEPTED_WEIGHTS_HELP}")
    if path.is_dir():
        raise WeightsError(f"{path} is a directory, not a weight file. {ACCEPTED_WEIGHTS_HELP}")
    data = path.read_bytes()
    if not data:
        raise WeightsError(f"{path}: the file is empty")
    if data.startswith(b"PK\x03\x04"):
        return _torch_load(path, "zip"), "torch-zip"
    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise WeightsError(
            f"{path}: Keras HDF5 files are not supported (the rcmalli/keras-vggface and WeidiXie Keras "
            f"models differ in padding, pooling and BN eps). {ACCEPTED_WEIGHTS_HELP}"
        )
    if data[0] not in _PICKLE_STARTS:
        raise WeightsError(
            f"{path}: not a weight file (neither a pickle nor a torch file; a text file?). {ACCEPTED_WEIGHTS_HELP}"
        )
    first = _read_raw_pickle(path, data)
    if type(first) is int and first == TORCH_LEGACY_MAGIC:
        return _torch_load(path, "legacy"), "torch-legacy"
    return first, "pickle"


# --- names --------------------------------------------------------------------------------------

_STAGE_BLOCKS = (3, 4, 6, 3)
_BLOCK_PARTS = (("1x1_reduce", "conv1"), ("3x3", "conv2"), ("1x1_increase", "conv3"))


def _dag_names() -> dict[str, str]:
    """DAG (MatConvNet / Caffe) module name -> torchvision-style module name."""
    names = {"conv1_7x7_s2": "conv1", "conv1_7x7_s2_bn": "bn1", "classifier": "fc", "classifier_1": "fc"}
    for stage, blocks in enumerate(_STAGE_BLOCKS, start=1):
        for block in range(blocks):
            dag = f"conv{stage + 1}_{block + 1}"
            ours = f"layer{stage}.{block}"
            for dag_part, our_part in _BLOCK_PARTS:
                names[f"{dag}_{dag_part}"] = f"{ours}.{our_part}"
                names[f"{dag}_{dag_part}_bn"] = f"{ours}.bn{our_part[-1]}"
            if block == 0:
                names[f"{dag}_1x1_proj"] = f"{ours}.downsample.0"
                names[f"{dag}_1x1_proj_bn"] = f"{ours}.downsample.1"
    return names


DAG_TO_TORCHVISION = _dag_names()
"""Module names of the Albanie DAG / MMdnn files mapped to this model's (torchvision's) names."""


def _normalize_keys(raw: dict, path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(key, bytes):
            key = key.decode("latin1")
        if not isinstance(key, str):
            raise WeightsError(f"{path}: a key of the weight dict is a {type(key).__name__}: {key!r}")
        while key.startswith("module."):
            key = key[len("module.") :]
        if key.endswith("num_batches_tracked"):
            continue
        out[key] = value
    return out


def _naming(keys) -> str:
    if any(k.startswith("conv1_7x7_s2") for k in keys):
        return "mmdnn" if any(k.startswith("classifier_1.") for k in keys) else "dag"
    return "torchvision"


def _to_tensor(key: str, value, path: Path) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise WeightsError(f"{path}: {key} has dtype {value.dtype}, expected float32 numbers")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise WeightsError(f"{path}: {key} is a {type(value).__name__}, not an array or tensor")
    if not value.is_floating_point():
        value = value.float()
    return value


def flip_channel_order(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swap the R and B input channels of ``conv1`` (BGR weights <-> RGB weights).

    Args:
        state_dict: the weights, with torchvision's names.

    Returns:
        A new dict; only ``conv1.weight`` is a new tensor.
    """
    out = dict(state_dict)
    out[_CONV1] = state_dict[_CONV1].flip(1).contiguous()
    return out


def load_vggface2_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str, str]:
    """Read a weight file into ``(state_dict, channel_order, fmt)``.

    ``state_dict`` maps this model's (torchvision's) names to float tensors, without
    ``num_batches_tracked``; ``fc.weight`` is 2-D. ``channel_order`` is the input order the
    weights expect as stored in the file (``"BGR"`` or ``"RGB"``). ``fmt`` names the container
    and the naming scheme: ``"pickle:torchvision"`` (cydonia999), ``"torch-legacy:dag"`` /
    ``"torch-zip:dag"`` (Albanie), ``"...:mmdnn"``, ``"...:torchvision"`` (a state dict of this
    model) or ``"...:interp"`` (written by :func:`save_weights`). The dict is not checked against a model:
    :func:`load_into` does that.

    Args:
        path: the weight file.

    Returns:
        ``(state_dict, channel_order, fmt)``.

    Raises:
        WeightsError: a file that is none of the formats above, holds no weight tensors, or names an unknown channel
            order (and the errors of reading it: a missing file, an unsafe pickle).
    """
    path = Path(path).expanduser()
    obj, container = _read_file(path)
    channel_order = None
    naming_hint = None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        if "channel_order" in obj:
            channel_order = str(obj["channel_order"]).upper()
            naming_hint = "interp"
        elif "vggface2_channel_order" in obj:  # a FaceResNet50 Lightning checkpoint
            channel_order = str(obj["vggface2_channel_order"]).upper()
            naming_hint = "interp"
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a dict of weights. {ACCEPTED_WEIGHTS_HELP}")
    raw = _normalize_keys(obj, path)
    if not raw:
        raise WeightsError(f"{path}: holds no weight tensors. {ACCEPTED_WEIGHTS_HELP}")
    naming = _naming(raw)
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        tensor = _to_tensor(key, value, path)
        if naming != "torchvision":
            module, _, param = key.rpartition(".")
            key = f"{DAG_TO_TORCHVISION.get(module, module)}.{param}" if module else key
            if key == "fc.weight" and tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
                tensor = tensor.flatten(1)  # DAG classifier: 1x1 conv -> Linear
        state[key] = tensor
    if channel_order is None:
        channel_order = "RGB" if naming == "dag" else "BGR"
    if channel_order not in ("BGR", "RGB"):
        raise WeightsError(f"{path}: unknown channel_order {channel_order!r} (expected 'BGR' or 'RGB')")
    return state, channel_order, f"{container}:{naming_hint or naming}"


# --- loading into a model -----------------------------------------------------------------------


def _limited(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "the weights") -> None:
    """Check that ``state_dict`` fits ``model`` exactly (``num_batches_tracked`` aside).

    Args:
        model: the network.
        state_dict: the weights to load.
        source: names the weights in the message.

    Raises:
        WeightsError: one error listing every missing, unexpected and mis-shaped tensor, with hints.
    """
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} (file {list(v.shape)}, model {list(expected[k])})"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} do not fit the model ({len(state_dict)} tensors in the file, {len(expected)} in the model):"]
    if missing:
        lines.append(f"  missing ({len(missing)}): {_limited(missing)}")
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): {_limited(unexpected)}")
    if wrong:
        lines.append(f"  wrong shape ({len(wrong)}): {_limited(wrong)}")
    if any(re.search(r"\.conv[45]\.|_1x1_(down|up)\.", k) for k in unexpected):
        lines.append("  (this looks like an SE-ResNet-50 file (senet50_*); only ResNet-50 is supported)")
    if any(k.startswith("fc.") for k in wrong):
        lines.append("  (the classifier size differs: set num_classes to the file's number of classes)")
    raise WeightsError("\n".join(lines))


def load_into(model: nn.Module, path: str | os.PathLike) -> WeightsInfo:
    """Load a weight file strictly into a :class:`~interp.models.vggface2.VGGFace2ResNet50`.

    The weights are converted to the model's declared channel order (conv1 flipped when the
    file's order differs), so afterwards the model takes RGB images in [0, 1] and its
    ``state_dict()`` is in the model's convention.

    Args:
        model: the network (its ``preprocess`` module declares the channel order).
        path: the weight file.

    Returns:
        What was loaded.

    Raises:
        WeightsError: a file that cannot be read or does not fit the model.
    """
    state, file_order, fmt = load_vggface2_weights(path)
    check_state_dict(model, state, source=f"the weights in {path}")
    model_order = _channel_order(model)
    if file_order != model_order:
        state = flip_channel_order(state)
    full = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            full[key] = torch.zeros_like(value)
    model.load_state_dict(full, strict=True)
    return WeightsInfo(os.fspath(path), fmt, file_order, len(state))


def _channel_order(model: nn.Module) -> str:
    """The channel order (``RGB`` or ``BGR``) of the model's preprocessing module."""
    return str(model.get_submodule("preprocess").channel_order)


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Save the weights with their channel order (``{"state_dict", "channel_order"}``), zip format.

    Args:
        model: the network (its ``preprocess`` module declares the channel order).
        path: the file to write.
    """
    state = collections.OrderedDict(
        (k, v.detach().cpu()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    )
    torch.save({"state_dict": state, "channel_order": _channel_order(model)}, path)
