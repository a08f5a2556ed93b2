"""What ``visualize`` and ``atlas`` interpret: a checkpoint of this project, or a face network or the
VGGFace2 ResNet-50 built from the ``model`` config node.

* :func:`load_checkpoint_subject`: the model and data of a checkpoint, rebuilt from the run's
  ``config.yaml`` (only this project's classes), its hyperparameters checked against its weight
  shapes on the ``meta`` device before anything is allocated (:func:`check_shapes`).
* :func:`load_subject`: the subject a ``visualize`` config names (``ckpt=...`` or a preset's ``model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from interp.errors import InterpError
from interp.runs import build_from_run_config, find_checkpoint, load_checkpoint_file, load_run_config

RANDOM_NOTE = "RANDOM WEIGHTS"
"""The note on every picture of a model with random weights."""


@dataclass
class Subject:
    """What is interpreted: the model, its data (a datamodule or None) and a description."""

    model: torch.nn.Module
    data: Any
    description: str
    random_weights: bool = False
    checkpoint: Path | None = None


def load_checkpoint_subject(spec: str, runs_dir: str, exclude: Path | None = None) -> Subject:
    """The model and data of a checkpoint of this project. The run's ``config.yaml`` (two folders
    up) names the model class and the data; only the project's own classes are accepted."""
    path = Path(find_checkpoint(spec, runs_dir, exclude=exclude))
    ckpt = load_checkpoint_file(path)  # a corrupt or foreign file fails here, with one line
    model_class, datamodule = build_from_run_config(load_run_config(path.parent.parent / "config.yaml"))
    check_shapes(model_class, ckpt, path)
    model = model_class.load_from_checkpoint(path, map_location="cpu", weights_only=True)  # type: ignore[attr-defined]
    return Subject(model, datamodule, f"checkpoint {path}", checkpoint=path)


def check_shapes(model_class: type, ckpt: dict[str, Any], path: Path) -> None:
    """Build the model of a checkpoint's hyperparameters on the ``meta`` device (no memory) and
    compare its weight shapes with the checkpoint's, so that hyperparameters that do not fit the
    weights (``hidden=10**9`` beside 512-unit weights) fail with one line before anything is
    allocated."""
    hparams = dict(ckpt.get("hyper_parameters") or {})
    try:
        with torch.device("meta"):
            probe = model_class(**hparams)
    except InterpError:
        raise
    except Exception as e:
        raise InterpError(f"{path}: its hyperparameters do not build a {model_class.__name__}: {e}") from None
    wanted = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    for name, value in ckpt["state_dict"].items():
        if name in wanted and wanted[name] != tuple(value.shape):
            raise InterpError(
                f"{path}: its hyperparameters do not fit its weights: {name} is {tuple(value.shape)} in the "
                f"checkpoint, {wanted[name]} by the hyperparameters"
            )


def load_subject(cfg: DictConfig, run_dir: Path) -> Subject:
    from hydra.utils import instantiate

    if cfg.ckpt:
        return load_checkpoint_subject(str(cfg.ckpt), cfg.runs_dir, exclude=run_dir)
    if cfg.get("model"):
        # VGGFace2 must be told its weights; the face-api models (weights: null) look them up themselves
        looks_up = str(cfg.model.get("_target_", "")).startswith("interp.models.faceapi.")
        if OmegaConf.is_missing(cfg.model, "weights") or (cfg.model.get("weights") is None and not looks_up):
            from interp.models.vggface2_weights import ACCEPTED_WEIGHTS_HELP

            raise InterpError(f"model.weights=PATH is required. {ACCEPTED_WEIGHTS_HELP}")
        model = instantiate(cfg.model, _convert_="all")  # plain lists in the hyperparameters: weights_only loads
        random = bool(getattr(model, "random_weights", False))
        info = getattr(model, "weights_info", None)
        shown = info if isinstance(info, str) else cfg.model.get("weights")
        return Subject(model, None, f"{type(model).__name__} ({shown})", random)
    raise InterpError(
        "nothing to visualize: give ckpt=<checkpoint or latest>, preset=face, preset=face_expression or "
        "preset=vggface2 model.weights=<file or random>"
    )
