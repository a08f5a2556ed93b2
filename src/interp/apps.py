"""The Hydra tasks behind ``python -m interp train`` and ``python -m interp visualize``.

They compose objects from config with ``hydra.utils.instantiate`` and hold no algorithm: what a
Python user would write by hand is a datamodule, a model, callbacks and ``Trainer.fit``.
Expected errors are raised as :class:`~interp.errors.InterpError`; ``interp.cli`` prints them.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from interp.config import build_callbacks
from interp.errors import InterpError

RUN_FILES = ("config.yaml", "checkpoints", "interp", "atlas")
"""What a run leaves in its folder; a folder holding any of them belongs to another run."""


def run_dir() -> Path:
    """The folder Hydra made for this run. A folder this process did not create (an explicit
    ``hydra.run.dir``) must not hold another run: its files would be overwritten."""
    from hydra.core.hydra_config import HydraConfig

    from interp.runs import created_here

    folder = Path(HydraConfig.get().runtime.output_dir)
    if not created_here(folder):
        taken = [name for name in RUN_FILES if (folder / name).exists()] + [p.name for p in folder.glob("events.*")]
        if taken:
            raise InterpError(
                f"{folder} already holds a run ({', '.join(taken)}): give a new folder, or leave hydra.run.dir out"
            )
    return folder


def _resume_path(cfg: DictConfig, folder: Path) -> str | None:
    """The checkpoint to resume from (``resume=latest`` looks in this experiment only), checked
    against the configured model's hyperparameters."""
    from interp.runs import diff_hparams, find_checkpoint, load_checkpoint_file

    if not cfg.get("resume"):
        return None
    path = find_checkpoint(str(cfg.resume), cfg.runs_dir, exclude=folder, experiment=cfg.experiment)
    saved = load_checkpoint_file(path).get("hyper_parameters", {})
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model_cfg, dict)
    wanted = {str(k): v for k, v in model_cfg.items() if not str(k).startswith("_")}
    differ = diff_hparams({k: saved[k] for k in wanted if k in saved}, wanted)
    if differ:
        raise InterpError(f"cannot resume from {path}: its model differs from this config: {'; '.join(differ)}")
    return path


class Stopped(BaseException):
    """A signal asked the run to stop. A BaseException, so no ``except Exception`` (the callbacks'
    ``on_error="warn"``, Hydra's job runner) swallows it, and not a KeyboardInterrupt, which
    Lightning turns into its own ``sys.exit(1)``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Stopped` at once, during training and during the
    interpretation callbacks alike (Lightning adds its own SIGTERM notifier in front of ours)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _report_stop(stop: Stopped, folder: Path, experiment: str) -> NoReturn:
    """Tell what is left of a stopped run and how to continue it; exit 128 + the signal number
    (143 for SIGTERM, 130 for SIGINT)."""
    last = folder / "checkpoints" / "last.ckpt"
    kept = f"the last checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
    print(
        f"\ninterrupted by {signal.Signals(stop.signum).name}: {kept}; continue with "
        f"`python -m interp train resume=latest experiment={experiment}`",
        file=sys.stderr,
    )
    sys.exit(128 + stop.signum)


def train(cfg: DictConfig) -> float:
    """Train, test on the held-out split, print where the run is. Returns the test accuracy."""
    import lightning.pytorch as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    folder = run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_path = _resume_path(cfg, folder)  # before anything is built: a wrong resume fails at once

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # fail early, with one line, when the data set is missing
    model = instantiate(cfg.model, _convert_="all")  # plain lists in the hyperparameters: weights_only loads
    logger = instantiate(cfg.logger, save_dir=str(folder)) if cfg.get("logger") else False
    checkpoint = ModelCheckpoint(
        dirpath=folder / "checkpoints",
        filename="best-epoch{epoch:02d}",
        auto_insert_metric_name=False,
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    interpretations = build_callbacks(cfg.get("callbacks"))
    for cb in interpretations:  # wrong layers, units or shapes fail here, before Lightning starts up
        cb.check(model, datamodule)
    callbacks: list[Any] = [checkpoint, *interpretations]
    if cfg.trainer.get("enable_progress_bar", True):
        from lightning.pytorch.callbacks import TQDMProgressBar

        # Redrawing the bar every step costs as much as a small model's step.
        callbacks.append(TQDMProgressBar(refresh_rate=int(cfg.get("progress_refresh_rate", 20))))
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, default_root_dir=str(folder))

    if ckpt_path:
        print(f"resuming from {ckpt_path}")
    try:
        with stopping_on_signals():
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            results = trainer.test(model, datamodule=datamodule, verbose=False)
    except Stopped as stop:
        _report_stop(stop, folder, str(cfg.experiment))
    acc = float(results[0]["test/acc"]) if results and "test/acc" in results[0] else float("nan")
    if trainer.is_global_zero:
        timed = [cb for cb in callbacks if getattr(cb, "seconds", None) is not None]
        if timed:
            print("\ninterpretations: " + ", ".join(f"{type(cb).__name__} {cb.seconds:.1f} s" for cb in timed))
        print(f"\ntest accuracy: {acc:.4f} ({len(datamodule.test_set)} test images)")
        print(f"run:          {folder}")
        print(f"checkpoints:  {folder / 'checkpoints'} (last.ckpt, best by val/acc)")
        print(f"tensorboard:  make tensorboard   (or: tensorboard --logdir {cfg.runs_dir})")
    return acc


def visualize(cfg: DictConfig) -> list[Path]:
    """Run the configured interpretations on a checkpoint or pretrained weights, without training.
    Ctrl-C or SIGTERM stops at once with one line (exit 130 or 143); what was written stays."""
    from interp.visualize import run_visualize

    folder = run_dir()
    try:
        with stopping_on_signals():
            return run_visualize(cfg, folder)
    except Stopped as stop:
        print(
            f"\ninterrupted by {signal.Signals(stop.signum).name}: what was written so far is in {folder}",
            file=sys.stderr,
        )
        sys.exit(128 + stop.signum)


def atlas(cfg: DictConfig) -> Path:
    """``python -m interp atlas [ckpt=latest] [runs_dir=runs] [out=<folder>]`` (``configs/atlas.yaml``):
    the unit atlas of a trained run, from the results its interpretations saved (the run folder of
    the checkpoint). Returns the path of its index page."""
    from interp.steps.atlas import unit_atlas
    from interp.subject import load_checkpoint_subject

    subject = load_checkpoint_subject(str(cfg.ckpt), str(cfg.runs_dir))
    assert subject.checkpoint is not None
    run_folder = subject.checkpoint.parent.parent
    dataset = None
    if subject.data is not None:
        subject.data.prepare_data()
        subject.data.setup("fit")
        dataset = subject.data.interp_dataset("train")
    out = None if cfg.get("out") in (None, "") else str(cfg.out)
    index = unit_atlas(subject.model.eval(), dataset, run_folder, out_dir=out, progress=True)
    print(f"atlas: {index}  (open it in a browser: file://{index.resolve()})")
    return index
