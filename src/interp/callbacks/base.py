"""What every interpretation callback shares: when to run, which data, what to do on failure.

A callback is a thin adapter: it gathers the model, the data and a reporter from the trainer and
calls one step of :mod:`interp.steps`, as Lightning's ``ModelSummary`` calls ``summarize()``.
``apply`` runs the same step without a trainer (``python -m interp visualize`` does that).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset
from typing_extensions import override

from interp.errors import InterpError
from interp.report import Reporter
from interp.settings import Settings as SettingsBase
from interp.steps.common import Units, check_layer, example_input, model_example, resolve_units
from interp.store import ResultStore, store_of

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "warn")
C = TypeVar("C", bound="InterpretationCallback")


class CallbackArgumentError(InterpError, TypeError, ValueError):
    """An argument of an interpretation callback that cannot work (a ``units`` string, ``k < 1``),
    refused when the callback is made; a ``TypeError`` and a ``ValueError`` for Python callers."""


def _range_text(units: list[int]) -> str:
    """How to write ``units`` in Python: ``range(a, b)`` when consecutive, else the list."""
    if len(units) > 1 and units == list(range(units[0], units[-1] + 1)):
        return f"range({units[0]}, {units[-1] + 1})"
    return str(units[0]) if len(units) == 1 else str(units)


def check_units(owner: str, units: Any) -> Units:
    """``units`` as given to a callback in Python: a unit number, a sequence of them, a range or None.

    A string (config syntax such as ``"0-7"``) is refused with the Python spelling of it.

    Args:
        owner: names the callback in the message.
        units: the value given.

    Returns:
        ``units`` unchanged.

    Raises:
        CallbackArgumentError: a string, bytes or a bool.
    """
    if isinstance(units, (str, bytes)):
        from interp.config import parse_units

        text = units.decode(errors="replace") if isinstance(units, bytes) else units
        try:
            parsed = parse_units(text)
        except InterpError:
            raise CallbackArgumentError(
                f"{owner}: units={text!r} is a string; in Python pass a unit number, a list or range of them, "
                "or None for every unit"
            ) from None
        spelled = "None" if parsed is None else _range_text(parsed)
        raise CallbackArgumentError(f"{owner}: units={text!r} is config syntax; in Python pass units={spelled}")
    if isinstance(units, bool):
        raise CallbackArgumentError(f"{owner}: units={units!r}: pass a unit number, a list or range of them, or None")
    return units


def dataset_of(data: Any, split: str = "train") -> Dataset | None:
    """The map-style data set to interpret from ``data``.

    A Dataset as it is, or a datamodule's ``interp_dataset(split)``, or the dataset of its ``<split>_dataloader()``.

    Args:
        data: a Dataset, a datamodule or ``None``.
        split: ``"train"``, ``"test"`` or ``"val"``.

    Returns:
        The data set, or ``None`` when there is none.
    """
    if data is None or isinstance(data, Dataset):
        return data
    if hasattr(data, "interp_dataset"):
        return data.interp_dataset(split)
    getter = {"train": "train_dataloader", "test": "test_dataloader", "val": "val_dataloader"}.get(split)
    if getter is None or not hasattr(data, getter):
        return None
    loader = getattr(data, getter)()
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    return getattr(loader, "dataset", None)


def trainer_data(trainer: L.Trainer, split: str) -> Dataset | None:
    """The trainer's data for ``split``: its datamodule's, else its own train dataloader's.

    Args:
        trainer: the trainer.
        split: ``"train"``, ``"test"`` or ``"val"``.

    Returns:
        The data set, or ``None``.
    """
    if trainer.datamodule is not None:
        return dataset_of(trainer.datamodule, split)
    if split == "train" and trainer.train_dataloader is not None:
        return dataset_of_loader(trainer.train_dataloader)
    return None


def dataset_of_loader(loader: Any) -> Dataset | None:
    """The data set of a DataLoader (the first one of a list or tuple of them).

    Args:
        loader: a DataLoader, or a list or tuple of them.

    Returns:
        Its ``dataset``, or ``None``.
    """
    if isinstance(loader, (list, tuple)):
        loader = loader[0]
    return getattr(loader, "dataset", None)


class InterpretationCallback(Callback):
    """Base of the interpretation callbacks.

    A subclass names its settings class in ``Settings`` (a :class:`~interp.settings.Settings`): this constructor
    builds ``self.settings`` from ``settings`` and the keywords it does not know itself, so a subclass that needs
    nothing else has no constructor of its own; :class:`UnitCallback` adds the units.

    Args:
        layer: layer name as in ``model.named_modules()``.
        settings: an instance of the subclass's ``Settings``, a mapping of its settings, or None (the defaults).
        split: which data set of the datamodule to read (``train``, ``test`` or ``val``; None: the subclass's
            ``default_split``).
        dataset: a map-style dataset to read instead of the datamodule's.
        every_n_epochs: also run at the end of every n-th training epoch (0: only at the end).
        run_on_train_end: run when training ends.
        on_error: ``"warn"`` logs a failure and training's results stay as they are; ``"raise"``
            re-raises. Checkpoints are written before this callback runs either way. Wrong
            layers, units or input shapes are refused when fitting starts, whatever this says.
        progress: show progress bars (only when the trainer shows its own).
        changes: settings by name, over ``settings`` (``steps=64``); how Hydra's config keys arrive.

    After a run, ``result`` holds what the step returned.

    Raises:
        SettingsError: a name that is not a setting, or a setting that cannot work.
    """

    needs_data: bool = True
    #: the subclass's settings class (None: a callback without settings, which takes no ``changes``)
    Settings: ClassVar[type[SettingsBase] | None] = None
    #: the data set read when ``split`` is not given
    default_split: ClassVar[str] = "train"

    @property
    def units(self) -> Units:
        """The units to interpret (None: every unit of the layer); a string is refused when set."""
        return self.__dict__.get("_units")

    @units.setter
    def units(self, value: Units) -> None:
        self.__dict__["_units"] = check_units(type(self).__name__, value)

    def __init__(
        self,
        layer: str,
        settings: SettingsBase | Mapping[str, Any] | None = None,
        *,
        split: str | None = None,
        dataset: Dataset | None = None,
        every_n_epochs: int = 0,
        run_on_train_end: bool = True,
        on_error: str = "warn",
        progress: bool = True,
        **changes: Any,
    ):
        super().__init__()
        split = self.default_split if split is None else split
        if self.Settings is not None:
            self.settings: Any = self.Settings.build(settings, type(self).__name__, **changes)
        elif settings is not None or changes:
            unknown = next(iter(changes), "settings")
            raise CallbackArgumentError(f"{type(self).__name__}: unknown argument {unknown!r}: it has no settings")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if split not in ("train", "test", "val"):
            raise ValueError(f"split must be 'train', 'test' or 'val', got {split!r}")
        self.layer = layer
        self.split = split
        self.dataset = dataset
        self.every_n_epochs = int(every_n_epochs or 0)
        self.run_on_train_end = run_on_train_end
        self.on_error = on_error
        self.progress = progress
        self.result: Any = None
        self.seconds: float | None = None  # wall time of the last run
        self.store = ResultStore()  # the run's results; apply() sets the shared one

    # Lightning hooks ---------------------------------------------------------------------------
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            needs_example = model_example(pl_module) is None and self.dataset is None
            self.check(pl_module, trainer_data(trainer, self.split) if needs_example else None)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.run(trainer, pl_module)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run_on_train_end:
            self.run(trainer, pl_module)

    # Running -----------------------------------------------------------------------------------
    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        """Run now with the trainer's data and loggers, at the trainer's global step.

        A failure follows ``on_error``.

        Args:
            trainer: the trainer.
            pl_module: the model.

        Returns:
            What the step returned (also in ``result``), or ``None`` after a failure with ``on_error="warn"``.
        """
        try:
            store = store_of(trainer)
            data = self.dataset
            if data is None:  # also for a step that needs none: it may reuse results filed under it
                # one data set object per split and step for every callback of the run: results are filed
                # under the data set they index (a datamodule may build a new one at each call)
                data = store.get(trainer, trainer.global_step, self.split, "dataset")
                if data is None:
                    data = trainer_data(trainer, self.split)
                    store.put(trainer, trainer.global_step, self.split, "dataset", (), data)
            return self.apply(
                pl_module,
                data,
                Reporter.for_trainer(trainer),
                step=trainer.global_step,
                others=trainer.callbacks,
                progress=self.progress and trainer.is_global_zero and trainer.progress_bar_callback is not None,
                store=store,
            )
        except Exception as exc:
            if self.on_error == "raise":
                raise
            rank_zero_warn(f"{type(self).__name__} on {self.layer} failed: {type(exc).__name__}: {exc}")
            log.debug("traceback of the failure", exc_info=True)
            return None

    def apply(
        self,
        model: torch.nn.Module,
        data: Any = None,
        reporter: Reporter | None = None,
        *,
        step: int = 0,
        others: Sequence[Any] = (),
        progress: bool | None = None,
        store: ResultStore | None = None,
    ) -> Any:
        """Run the step on ``model`` without a trainer.

        The model runs in eval mode with gradients on; its mode is restored after.

        Args:
            model: the network.
            data: a Dataset or a datamodule (its ``split`` set is read).
            reporter: where pictures go (``None``: nowhere, only ``result``).
            step: the global step the results are logged at.
            others: callbacks given explicitly whose results this one may reuse.
            progress: show progress bars; ``None``: the callback's ``progress``.
            store: the run's results (:class:`~interp.store.ResultStore`, shared by the callbacks of one run: what one
                computed, another reuses, in either order; ``None``: a store of its own).

        Returns:
            What the step returned (also in ``result``).

        Raises:
            ValueError: a callback that needs data got none.
        """
        self.store = store if store is not None else ResultStore()
        dataset = self.dataset if self.dataset is not None else dataset_of(data, self.split)
        if self.needs_data and dataset is None:
            raise ValueError(f"{type(self).__name__} needs data: give it a dataset or a datamodule")
        reporter = reporter if reporter is not None else Reporter(".", enabled=False)  # compute, write nothing
        was_training = model.training
        start = time.perf_counter()
        try:
            # Lightning may call us inside inference mode; the algorithms need gradients.
            with torch.inference_mode(False), torch.enable_grad():
                model.eval()
                self.result = self.interpret(
                    model, dataset, reporter, step, list(others), self.progress if progress is None else progress
                )
            self.seconds = time.perf_counter() - start
            name = f"{type(self).__name__}" + (f" on {self.layer}" if self.layer else "")
            reporter.text(f"timing/{type(self).__name__}_{self.layer or 'run'}", f"{name}: {self.seconds:.1f} s", step)
            if reporter.enabled:
                log.info("%s took %.1f s", name, self.seconds)
            reporter.flush()
        finally:
            model.train(was_training)
        return self.result

    def interpret(
        self,
        model: torch.nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Any:  # pragma: no cover - every subclass overrides
        """The step itself; every callback overrides it (the overrides inherit this documentation).

        Args:
            model: the network, in eval mode with gradients on.
            dataset: the data set to interpret, or ``None`` for a callback that needs none.
            reporter: where pictures, scalars and results go.
            step: the global step they are logged at.
            others: the run's other callbacks.
            progress: show progress bars.

        Returns:
            The step's result.
        """
        raise NotImplementedError

    # Checks before fitting -----------------------------------------------------------------------
    def example(self, model: torch.nn.Module, dataset: Dataset | None) -> torch.Tensor | None:
        """One input of the model: its ``example_input_array``, else the first item of ``dataset``.

        Args:
            model: the network.
            dataset: the data set, or ``None``.

        Returns:
            The example batch, or ``None`` when there is neither.
        """
        example = model_example(model)
        if example is None and dataset is not None and len(dataset) > 0:  # type: ignore[arg-type]
            example = example_input(dataset)
        return example

    def check(self, model: torch.nn.Module, data: Any = None) -> None:
        """Check the layer, units and input shape against ``model`` before any work.

        Warns when the model is a torchvision classifier that expects normalized images.

        Args:
            model: the network.
            data: a Dataset or datamodule to take an example input from when the model has none.

        Raises:
            InterpError: an unknown layer or units out of range.
        """
        from interp.models.normalized import looks_like_torchvision_classifier

        if looks_like_torchvision_classifier(model):
            rank_zero_warn(
                f"{type(model).__name__} is a torchvision classifier: it expects normalized images, and this "
                "project's images are in [0, 1]. Wrap it: interp.models.normalized.Normalized.imagenet(model)"
            )
        dataset = self.dataset if self.dataset is not None else dataset_of(data, self.split)
        self.validate(model, self.example(model, dataset))

    def validate(self, model: torch.nn.Module, example: torch.Tensor | None) -> None:
        """Refuse an unknown layer or out-of-range units before any work.

        Args:
            model: the network.
            example: an input batch, or ``None`` (units are then not checked).

        Raises:
            InterpError: an unknown layer or units out of range.
        """
        check_layer(model, self.layer)
        if example is not None and self.units is not None:
            resolve_units(model, self.layer, self.units, example)


class UnitCallback(InterpretationCallback):
    """Base of the callbacks that interpret units of a layer: :class:`InterpretationCallback` with ``units``.

    Args:
        layer: layer name.
        units: unit numbers (an int, a list or a range); None: every unit of the layer. A string (the config's
            ``"0-7"``) is refused with its Python spelling.
        settings: as for :class:`InterpretationCallback`.
        options: the run arguments of :class:`InterpretationCallback` (``split``, ``dataset``,
            ``every_n_epochs``, ``run_on_train_end``, ``on_error``, ``progress``) and settings by name.
    """

    def __init__(
        self, layer: str, units: Units = None, settings: SettingsBase | Mapping[str, Any] | None = None, **options: Any
    ):
        super().__init__(layer, settings, **options)
        self.units = units
