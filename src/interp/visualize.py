"""``python -m interp visualize``: the interpretation steps on demand, without training.

It loads a checkpoint of this project (``ckpt=...``, rebuilt only from the project's own
classes) or the VGGFace2 ResNet-50 (``preset=vggface2``), builds the callbacks named in the
``callbacks`` config group (the same files training uses) and applies each one to the model:
the steps run without a Trainer, writing to TensorBoard and PNGs in a new run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from interp.config import build_callbacks
from interp.errors import InterpError
from interp.report import Reporter
from interp.runs import build_from_run_config, find_checkpoint, load_checkpoint_file, load_run_config
from interp.steps.common import check_layer

RANDOM_NOTE = "RANDOM WEIGHTS"


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
        _run_on_processes(devices, device, model, data, callbacks, run_dir)
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
    for cb in callbacks:
        cb.apply(model, data, reporter, others=callbacks, progress=rank == 0)
        if rank == 0:
            print(f"  {type(cb).__name__}: {cb.seconds:.1f} s")
    if rank == 0:
        logger.experiment.flush()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(
    rank: int,
    world: int,
    port: int,
    device: str,
    model: torch.nn.Module,
    data: Any,
    callbacks: list[Any],
    run_dir: Path,
    threads: int,
) -> None:
    import torch.distributed as dist

    torch.set_num_threads(threads)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(rank)
        model = model.to(f"cuda:{rank}")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _apply_all(model, data, callbacks, run_dir, rank)
    finally:
        dist.destroy_process_group()


def _run_on_processes(
    devices: int, device: str, model: torch.nn.Module, data: Any, callbacks: list[Any], run_dir: Path
) -> None:
    """The callbacks on ``devices`` processes (gloo on CPU, NCCL on GPUs): units and data are
    sharded across the processes by the steps themselves, rank zero gathers and writes. On the CPU
    the processes are forked (the model and data are shared, not pickled) and split the cores."""
    import os

    import torch.multiprocessing as mp

    if device.startswith("cuda") and devices > torch.cuda.device_count():
        raise InterpError(f"devices={devices}: this machine has {torch.cuda.device_count()} CUDA devices")
    threads = max(1, (os.cpu_count() or 1) // devices) if not device.startswith("cuda") else 1
    method = "spawn" if device.startswith("cuda") else "fork"
    args = (
        devices,
        _free_port(),
        device,
        model.cpu() if method == "spawn" else model,
        data,
        callbacks,
        run_dir,
        threads,
    )
    mp.start_processes(_worker, args=args, nprocs=devices, start_method=method, join=True)
