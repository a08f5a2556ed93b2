"""``python -m interp visualize``: the interpretation steps on demand, without training.

It loads a checkpoint of this project (``ckpt=...``, rebuilt only from the project's own
classes) or the VGGFace2 ResNet-50 (``preset=vggface2``), builds the callbacks named in the
``callbacks`` config group (the same files training uses) and applies each one to the model:
the steps run without a Trainer, writing to TensorBoard and PNGs in a new run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from interp.config import build_callbacks
from interp.errors import InterpError
from interp.launch import run_on_processes
from interp.report import Reporter
from interp.steps.common import check_layer
from interp.store import ResultStore
from interp.subject import RANDOM_NOTE, load_subject


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InterpError(f"device={name}: CUDA is not available on this machine; use device=cpu or device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InterpError("device=mps: Apple's MPS is not available on this machine; use device=cpu or device=auto")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise InterpError(f"device={name}: use auto, cpu, cuda or mps")
    return name


#: (smallest, largest) value of each whole-number setting of ``visualize``
LIMITS = {
    "steps": (1, 100_000),
    "size": (16, 4096),
    "octaves": (1, 12),
    "steps_per_octave": (1, 10_000),
    "devices": (1, 256),
}


def check_settings(cfg: DictConfig) -> None:
    """Numbers that cannot work, refused before anything loads: each of :data:`LIMITS` is a whole
    number within its range (``size`` is the photo's shorter side in pixels: 4096 already asks for
    gigabytes on a ResNet-50)."""
    for key, (low, high) in LIMITS.items():
        value = cfg.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InterpError(f"{key}={value!r}: must be a whole number from {low} to {high}")


def run_visualize(cfg: DictConfig, run_dir: Path) -> list[Path]:

    from interp.data.images import ImageFolderDataset, face_transform

    check_settings(cfg)
    device = _device(str(cfg.device))
    L.seed_everything(cfg.seed, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    subject = load_subject(cfg, run_dir)
    model = subject.model
    layer = cfg.layer or getattr(model, "default_layer", None)
    if not layer:
        raise InterpError("give layer=<name> (see interp.optvis.layer_names(model))")
    check_layer(model, layer)
    with open_dict(cfg):
        cfg.layer = layer
    callbacks = build_callbacks(cfg.get("callbacks"))
    if not callbacks:
        raise InterpError("no interpretation chosen: give callbacks=[panel,topk,featvis,...]")
    for cb in callbacks:
        if hasattr(cb, "note") and subject.random_weights:
            cb.note = RANDOM_NOTE

    data = subject.data
    if cfg.data_dir:
        data = ImageFolderDataset(cfg.data_dir, transform=face_transform())
    elif data is not None:
        data.prepare_data()
        data.setup("fit")
    needing = [type(cb).__name__ for cb in callbacks if cb.needs_data]
    if needing and data is None:
        raise InterpError(f"{', '.join(needing)} need data: give data_dir=<folder of images>")
    if subject.random_weights:
        print("interp visualize: model.weights=random: these images come from RANDOM weights, not a trained model")

    model = model.to(device).eval()
    for cb in callbacks:
        cb.check(model, data)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    names = ", ".join(type(cb).__name__ for cb in callbacks)
    print(f"interp visualize: {subject.description}, layer {layer}: {names}")
    devices = int(cfg.get("devices") or 1)
    if devices == 1:
        _apply_all(model, data, callbacks, run_dir, rank=0)
    else:
        run_on_processes(_apply_all, devices, device, model, data, callbacks, run_dir)
    written = sorted((run_dir / "interp").rglob("*.png"))
    print(f"\nimages:       {run_dir / 'interp'} ({len(written)} PNG files)")
    for path in written[:6]:
        print(f"  {path}")
    print(f"tensorboard:  make tensorboard   (or: tensorboard --logdir {cfg.runs_dir})")
    return written


def _apply_all(model: torch.nn.Module, data: Any, callbacks: list[Any], run_dir: Path, rank: int) -> None:
    """Apply every callback in turn; only rank zero logs and writes."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if rank == 0:
        logger = TensorBoardLogger(str(run_dir), name="", version="", default_hp_metric=False)
        reporter = Reporter(run_dir, writer=logger.experiment, loggers=[logger])
    else:
        reporter = Reporter(run_dir, enabled=False)
    store = ResultStore()  # what one callback computed, the others reuse, in any order
    for cb in callbacks:
        cb.apply(model, data, reporter, others=callbacks, progress=rank == 0, store=store)
        if rank == 0:
            print(f"  {type(cb).__name__}: {cb.seconds:.1f} s")
    if rank == 0:
        logger.experiment.flush()
