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

    MAX_WIDTH = 65_536
    """The widest hidden layer the constructors accept (a typo such as ``hidden=10**9`` would ask
    for terabytes before anything else is checked)."""

    def check_hparams(self) -> None:
        """Refuse hyperparameters that cannot train, with one line each (``InterpError``): a
        learning rate that is not a finite number >= 0, dropout or label smoothing outside [0, 1),
        a negative or non-finite weight decay, a hidden width outside [1, :attr:`MAX_WIDTH`]."""
        import math

        from interp.errors import InterpError

        hp = self.hparams

        def number(key: str) -> float | None:
            if key not in hp:
                return None
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InterpError(f"model.{key}={value!r}: must be a number")
            return float(value)

        lr = number("lr")
        if lr is not None and not (math.isfinite(lr) and lr >= 0):
            raise InterpError(f"model.lr={hp['lr']!r}: must be a finite number >= 0")
        for key in ("dropout", "label_smoothing"):
            v = number(key)
            if v is not None and not 0 <= v < 1:
                raise InterpError(f"model.{key}={hp[key]!r}: must be in [0, 1)")
        wd = number("weight_decay")
        if wd is not None and not (math.isfinite(wd) and wd >= 0):
            raise InterpError(f"model.weight_decay={hp['weight_decay']!r}: must be a finite number >= 0")
        widths = [("hidden", hp.get("hidden"))] + [("channels", c) for c in hp.get("channels", ()) or ()]
        for key, v in widths:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= self.MAX_WIDTH:
                raise InterpError(f"model.{key}: {v!r} must be a whole number from 1 to {self.MAX_WIDTH}")

    def setup_metrics(self, num_classes: int) -> None:
        """Create the accuracy and loss metrics; call from the subclass's ``__init__``.

        Args:
            num_classes: number of classes.
        """
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
