"""``python -m interp visualize``: the interpretation callbacks on demand, without training.

It loads a checkpoint of this project (``ckpt=...``) or the VGGFace2 ResNet-50 (``model=vggface2``),
builds the same callbacks that training uses and runs them once; images go to TensorBoard and
PNGs in a new run folder through the same report code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf

from interp.errors import InterpError
from interp.runs import find_checkpoint

log = logging.getLogger("interp")


def _import(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_checkpoint_subject(spec: str, runs_dir: str, exclude: Path):
    """(model, datamodule or None, description) for a checkpoint of a run of this project. The
    run's ``config.yaml`` (two folders up) names the model class and the data."""
    from hydra.utils import instantiate

    path = Path(find_checkpoint(spec, runs_dir, exclude=exclude))
    config_file = path.parent.parent / "config.yaml"
    if not config_file.is_file():
        raise InterpError(f"{config_file} not found: visualize needs the config.yaml that `interp train` writes "
                          "next to the checkpoints folder")
    run_cfg = OmegaConf.load(config_file)
    cls = _import(run_cfg.model._target_)
    model = cls.load_from_checkpoint(path, map_location="cpu")
    datamodule = instantiate(run_cfg.data) if "data" in run_cfg else None
    return model, datamodule, f"checkpoint {path}"


def _units(cfg) -> object:
    if cfg.unit is not None:
        return list(cfg.unit) if OmegaConf.is_list(cfg.unit) else [int(cfg.unit)]
    units = cfg.units
    return list(units) if OmegaConf.is_list(units) else units


def build_callbacks(cfg: DictConfig, names: list[str], layer: str, dataset, random_note: str | None) -> list:
    """The callbacks named in ``names``, built from the same ``configs/callbacks/<name>.yaml`` that
    training uses, with this run's layer, units, steps and data."""
    from hydra.utils import instantiate

    from interp.cli import config_dir

    folder = Path(config_dir()) / "callbacks"
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    # A plain (non-struct) copy of the run's config, with `unit=` taking the place of `units`.
    base = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    base.units = _units(cfg)
    made = []
    for name in names:
        if name not in known:
            raise InterpError(f"unknown interpretation {name!r}: use one of {', '.join(known)}")
        node = OmegaConf.load(folder / f"{name}.yaml")
        override = {"layer": layer, "on_error": "raise", "dataset": None}
        for key, value in (("steps", cfg.steps), ("octaves", cfg.octaves), ("steps_per_octave", cfg.steps_per_octave),
                           ("seed", cfg.seed)):
            if key in node:
                override[key] = value
        if name == "dream":
            override["note"] = random_note
        if not layer.startswith("dense"):
            # The smoothing penalties of the configs are tuned for 28x28 digits.
            override.update({k: 0.0 for k in ("tv_weight", "l1_weight") if k in node})
        # Interpolations such as ${units} and ${image} resolve against this run's config.
        merged = OmegaConf.merge(base, {"_callback": OmegaConf.merge(node, override)})
        made.append(instantiate(merged._callback, dataset=dataset))
    return made


def run_visualize(cfg: DictConfig, run_dir: Path) -> list[Path]:
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import TensorBoardLogger

    L.seed_everything(cfg.seed, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    datamodule, random_note = None, None
    if cfg.ckpt:
        model, datamodule, subject = load_checkpoint_subject(str(cfg.ckpt), cfg.runs_dir, exclude=run_dir)
    elif cfg.get("model"):
        if cfg.model.get("weights") in (None, "???") or OmegaConf.is_missing(cfg.model, "weights"):
            from interp.models.vggface2_weights import ACCEPTED_WEIGHTS_HELP

            raise InterpError(f"model.weights=PATH is required. {ACCEPTED_WEIGHTS_HELP}")
        model = instantiate(cfg.model)
        subject = f"{type(model).__name__} ({cfg.model.weights})"
        if getattr(model, "random_weights", False):
            random_note = "RANDOM WEIGHTS"
            print("interp visualize: model.weights=random: these images come from RANDOM weights, not a trained model")
    else:
        raise InterpError("nothing to visualize: give ckpt=<checkpoint or latest> or model=vggface2 model.weights=<file>")

    layer = cfg.layer or getattr(model, "default_layer", None)
    if not layer:
        raise InterpError("give layer=<name> (see interp.optvis.layer_names(model))")
    from interp.optvis import get_layer

    try:
        get_layer(model, layer)
    except ValueError as exc:
        raise InterpError(str(exc)) from None

    dataset = None
    if datamodule is not None:
        datamodule.prepare_data()
        datamodule.setup("fit")
        dataset = datamodule.interp_dataset("train") if hasattr(datamodule, "interp_dataset") else None
    if cfg.data_dir:
        from interp.data.images import ImageFolderDataset, face_transform

        dataset = ImageFolderDataset(cfg.data_dir, transform=face_transform())
    names = cfg.interpretations
    if names is None:
        names = ["panel", "attribution"] if cfg.ckpt else (["dream", "featvis"] + (["topk"] if cfg.data_dir else []))
    names = [names] if isinstance(names, str) else list(names)
    needs_data = {"topk", "panel", "attribution", "inversion", "projector"} & set(names)
    if needs_data and dataset is None:
        raise InterpError(f"{', '.join(sorted(needs_data))} need data: give data=<folder of images>")

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    callbacks = build_callbacks(cfg, names, layer, dataset, random_note)
    logger = TensorBoardLogger(str(run_dir), name="", version="", default_hp_metric=False)
    trainer = L.Trainer(logger=logger, accelerator="cpu" if device == "cpu" else "auto", devices=1, max_epochs=0,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(run_dir))
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    print(f"interp visualize: {subject}, layer {layer}: {', '.join(names)}")
    written: list[Path] = []
    for cb in callbacks:
        cb.run(trainer, model)
    for path in sorted((run_dir / "interp").rglob("*.png")):
        written.append(path)
    logger.experiment.flush()
    print(f"\nimages:       {run_dir / 'interp'} ({len(written)} PNG files)")
    for path in written[:6]:
        print(f"  {path}")
    print(f"tensorboard:  make tensorboard   (or: tensorboard --logdir {cfg.runs_dir})")
    return written
