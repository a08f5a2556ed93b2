"""What the MNIST classifiers share: metrics, the training and evaluation steps, the optimizer.

:class:`ImageClassifier` is the LightningModule; subclasses build their layers and ``forward``.
Hyperparameters it reads from ``self.hparams``: ``lr``, ``optimizer`` (``adam`` or ``rmsprop``),
``schedule`` (``cosine``, ``onecycle`` or ``none``), and optionally ``weight_decay`` (AdamW when
> 0) and ``label_smoothing`` (training loss only).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy


class ImageClassifier(L.LightningModule):
    """Training, evaluation and optimizer of a classifier of ``num_classes`` classes."""

    def setup_metrics(self, num_classes: int) -> None:
        """Create the metrics; call from the subclass's ``__init__``."""
        self.train_acc = MulticlassAccuracy(num_classes)
        self.train_loss = MeanMetric()
        self.val_acc = MulticlassAccuracy(num_classes)
        self.test_acc = MulticlassAccuracy(num_classes)

    def _step(self, batch: Any, metric: Metric, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # The per-step cost of logging is most of Lightning's overhead on a model this small
        # (benchmarks/train_speed.py): accumulate the epoch metrics with `update` and log the
        # step loss only every `log_every_n_steps`.
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=float(self.hparams.get("label_smoothing", 0.0)))
        self.train_acc.update(logits.detach(), y)
        self.train_loss.update(loss.detach(), weight=y.shape[0])
        if self._trainer is not None and batch_idx % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.train_loss.compute())
        self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.train_loss.reset()
        self.train_acc.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, self.val_acc, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, self.test_acc, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(dim=1)

    def configure_optimizers(self) -> Any:
        name = self.hparams.optimizer.lower()
        lr = self.hparams.lr
        wd = float(self.hparams.get("weight_decay", 0.0))
        opt: torch.optim.Optimizer
        if name == "adam":
            opt = (
                torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=wd)
                if wd > 0
                else torch.optim.Adam(self.parameters(), lr=lr)
            )
        elif name == "rmsprop":
            opt = torch.optim.RMSprop(self.parameters(), lr=lr, weight_decay=wd)
        else:
            raise ValueError(f"unknown optimizer {self.hparams.optimizer!r}: use 'adam' or 'rmsprop'")
        schedule = self.hparams.get("schedule", "none")
        if schedule == "none" or self._trainer is None:
            return opt
        if schedule == "cosine":
            epochs = max(1, int(self.trainer.max_epochs or 1))
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)}
        if schedule == "onecycle":
            steps = max(1, int(self.trainer.estimated_stepping_batches))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        raise ValueError(f"unknown schedule {schedule!r}: use 'cosine', 'onecycle' or 'none'")
