"""The Hydra tasks behind ``python -m interp train`` and ``python -m interp visualize``.

They compose objects from config with ``hydra.utils.instantiate`` and hold no algorithm: what a
Python user would write by hand is a datamodule, a model, callbacks and ``Trainer.fit``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from interp.errors import InterpError



def _run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def build_callbacks(cfg: DictConfig | None) -> list:
    """Instantiate every entry of the ``callbacks`` config group (a dict name -> config)."""
    from hydra.utils import instantiate

    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def _report_error(command: str, exc: InterpError) -> None:
    print(f"interp {command}: error: {exc}", file=sys.stderr)
    sys.exit(2)


def train(cfg: DictConfig):
    """Train, test on the held-out split, print where the run is. Returns the test accuracy."""
    try:
        return _train(cfg)
    except InterpError as exc:
        _report_error("train", exc)


def _train(cfg: DictConfig):
    import lightning.pytorch as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from interp.runs import find_checkpoint

    run_dir = _run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # fail early, with one line, when the data set is missing
    model = instantiate(cfg.model)
    logger = instantiate(cfg.logger, save_dir=str(run_dir)) if cfg.get("logger") else False
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-epoch{epoch:02d}",
        auto_insert_metric_name=False,
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    callbacks = [checkpoint, *build_callbacks(cfg.get("callbacks"))]
    if cfg.trainer.get("enable_progress_bar", True):
        from lightning.pytorch.callbacks import TQDMProgressBar

        # Redrawing the bar every step costs as much as a small model's step.
        callbacks.append(TQDMProgressBar(refresh_rate=int(cfg.get("progress_refresh_rate", 20))))
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks, default_root_dir=str(run_dir))

    ckpt_path = None
    if cfg.get("resume"):
        ckpt_path = find_checkpoint(str(cfg.resume), cfg.runs_dir, exclude=run_dir)
        print(f"resuming from {ckpt_path}")
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.interrupted:
        print(f"\ninterrupted: the last checkpoint is in {run_dir / 'checkpoints'}; "
              f"continue with `python -m interp train resume=latest`", file=sys.stderr)
        sys.exit(130)

    results = trainer.test(model, datamodule=datamodule, verbose=False)
    acc = float(results[0]["test/acc"]) if results and "test/acc" in results[0] else float("nan")
    if trainer.is_global_zero:
        print(f"\ntest accuracy: {acc:.4f} ({len(datamodule.test_set)} test images)")
        print(f"run:          {run_dir}")
        print(f"checkpoints:  {run_dir / 'checkpoints'} (last.ckpt, best by val/acc)")
        print(f"tensorboard:  make tensorboard   (or: tensorboard --logdir {cfg.runs_dir})")
    return acc


def visualize(cfg: DictConfig):
    """Run the configured interpretations on a checkpoint or pretrained weights, without training."""
    try:
        from interp.visualize import run_visualize

        return run_visualize(cfg, _run_dir())
    except InterpError as exc:
        _report_error("visualize", exc)
