"""What every interpretation callback shares: when to run, which units, where results go.

A callback gathers inputs from the trainer (model, datamodule, logger), calls ``interp.optvis``
and hands the pictures to :class:`interp.report.Reporter`. It holds no algorithm.
"""

from __future__ import annotations

import logging
import re
import traceback
import weakref
from collections.abc import Sequence

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset, Subset

from interp.report import Reporter

log = logging.getLogger("interp")

Units = str | int | Sequence[int] | range | None

# Results of earlier callbacks in the same run (top-k, renderings), so that later ones (the unit
# panel, the ratio to the dataset maximum) reuse them instead of computing them again.
_RESULTS: "weakref.WeakKeyDictionary[L.Trainer, dict]" = weakref.WeakKeyDictionary()


def shared_results(trainer: L.Trainer) -> dict:
    """A dict that lives as long as ``trainer``: ``{(kind, layer): result}``."""
    return _RESULTS.setdefault(trainer, {})


def parse_units(units: Units, layer_size: int | None = None) -> list[int]:
    """``"all"``, ``"0-63"`` (inclusive), ``"0:64"``, ``"3,7,32"``, an int, a range or a list."""
    if units is None or units == "all":
        if layer_size is None:
            raise ValueError("units='all' needs the layer size")
        return list(range(layer_size))
    if isinstance(units, int):
        return [units]
    if isinstance(units, str):
        text = units.replace(" ", "")
        if m := re.fullmatch(r"(\d+)-(\d+)", text):
            return list(range(int(m[1]), int(m[2]) + 1))
        if m := re.fullmatch(r"(\d+):(\d+)", text):
            return list(range(int(m[1]), int(m[2])))
        if re.fullmatch(r"\d+(,\d+)*", text):
            return [int(u) for u in text.split(",")]
        raise ValueError(f"cannot read units {units!r}: use 'all', '0-63', '0:64', '3,7,32' or a list")
    out = [int(u) for u in units]
    if layer_size is not None and out and (min(out) < 0 or max(out) >= layer_size):
        raise ValueError(f"units {out} out of range: the layer has {layer_size} units")
    return out


def unit_tag(kind: str, layer: str, unit: int) -> str:
    return f"interp/{kind}/{layer}/unit_{unit:03d}"


def infer_layer_size(model: torch.nn.Module, layer: str, example: torch.Tensor) -> int:
    from interp.optvis import layer_size

    return layer_size(model, layer, example[:1].to(_device(model)))[0]


def _device(model: torch.nn.Module) -> torch.device:
    from interp.optvis import model_device

    return model_device(model)


def dataset_of(trainer: L.Trainer, split: str = "train") -> Dataset:
    """The map-style data set to interpret: the datamodule's ``interp_dataset(split)`` when it has
    one, else the dataset of its ``train``/``test``/``val`` dataloader."""
    dm = trainer.datamodule
    if dm is not None and hasattr(dm, "interp_dataset"):
        return dm.interp_dataset(split)
    loader = None
    if dm is not None:
        getter = {"train": "train_dataloader", "test": "test_dataloader", "val": "val_dataloader"}[split]
        loader = getattr(dm, getter)()
    elif split == "train":
        loader = trainer.train_dataloader
    if loader is None:
        raise RuntimeError(f"no {split} data to interpret: give the callback a dataset or use a datamodule")
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise RuntimeError(f"the {split} dataloader has no map-style dataset to take examples from")
    return dataset


def sequential_loader(dataset: Dataset, batch_size: int, start: int = 0, stop: int | None = None) -> DataLoader:
    """Batches of ``dataset[start:stop]`` in order (sliced at once for TensorImageDataset)."""
    from interp.data.mnist import TensorImageDataset, collate_batch

    stop = len(dataset) if stop is None else stop
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    part = Subset(dataset, range(start, stop)) if (start, stop) != (0, len(dataset)) else dataset
    if isinstance(base, TensorImageDataset):
        return DataLoader(part, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    return DataLoader(part, batch_size=batch_size, shuffle=False)


def image_regularizer(tv_weight: float = 0.0, l1_weight: float = 0.0):
    """``-tv_weight * TV - l1_weight * L1`` (or None when both are 0): smoother, darker images."""
    from interp.optvis import objectives as obj

    terms = []
    if tv_weight:
        terms.append(-float(tv_weight) * obj.total_variation())
    if l1_weight:
        terms.append(-float(l1_weight) * obj.l1())
    return sum(terms) if terms else None


def example_input(dataset: Dataset, n: int = 1) -> torch.Tensor:
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return torch.stack([torch.as_tensor(i[0] if isinstance(i, (tuple, list)) else i, dtype=torch.float32) for i in items])


class InterpretationCallback(Callback):
    """Base of the interpretation callbacks.

    Args:
        layer: layer name as in ``model.named_modules()``.
        units: ``"all"``, ``"0-63"``, a list, a range.
        every_n_epochs: also run at the end of every n-th training epoch (0: only at the end).
        on_train_end: run when training ends (default true).
        on_error: ``"warn"`` logs the failure and training's results stay as they are;
            ``"raise"`` re-raises. Checkpoints are written before this callback runs either way.
        dataset: a map-style dataset to take examples from instead of the datamodule's.
    """

    kind = "interp"

    def __init__(self, layer: str, units: Units = None, every_n_epochs: int = 0, on_train_end: bool = True,
                 on_error: str = "warn", dataset: Dataset | None = None):
        super().__init__()
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
        self.layer = layer
        self.units = units
        self.every_n_epochs = int(every_n_epochs or 0)
        self.run_on_train_end = on_train_end
        self.on_error = on_error
        self.dataset = dataset

    # Lightning hooks ---------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer, pl_module):
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._run(trainer, pl_module, step=trainer.current_epoch + 1)

    def on_train_end(self, trainer, pl_module):
        if self.run_on_train_end:
            self._run(trainer, pl_module, step=trainer.current_epoch)

    # Running -----------------------------------------------------------------------------------
    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int = 0) -> None:
        """Run now (on demand), outside of the Lightning hooks."""
        self._run(trainer, pl_module, step)

    def _run(self, trainer, pl_module, step: int) -> None:
        reporter = Reporter.for_trainer(trainer)
        was_training = pl_module.training
        try:
            # Lightning may call us inside inference mode; the algorithms need gradients.
            with torch.inference_mode(False), torch.enable_grad():
                pl_module.eval()
                self.interpret(trainer, pl_module, reporter, step)
            reporter.flush()
        except Exception as exc:
            if self.on_error == "raise":
                raise
            log.error("interp: %s on %s failed: %s\n%s", type(self).__name__, self.layer, exc, traceback.format_exc())
        finally:
            pl_module.train(was_training)

    def interpret(self, trainer, pl_module, reporter: Reporter, step: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def data(self, trainer, split: str = "train") -> Dataset:
        """The dataset given to the callback, else the trainer's datamodule's ``split`` set."""
        return self.dataset if self.dataset is not None else dataset_of(trainer, split)

    def resolve_units(self, pl_module, dataset: Dataset | None = None) -> list[int]:
        size = None
        if dataset is not None:
            size = infer_layer_size(pl_module, self.layer, example_input(dataset))
        elif getattr(pl_module, "example_input_array", None) is not None:
            size = infer_layer_size(pl_module, self.layer, pl_module.example_input_array)
        return parse_units(self.units, size)
