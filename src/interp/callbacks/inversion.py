"""``Inversion``: reconstruct test examples from a layer's representation (Mahendran & Vedaldi)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.optvis import Reconstruction
from interp.report import Reporter
from interp.steps.inversion import InversionSettings, inversion


class Inversion(InterpretationCallback):
    """Invert ``n_examples`` examples of the ``split`` set (:func:`interp.steps.inversion`):
    ``interp/inversion/<layer>`` (originals above, reconstructions below) and the mean relative
    representation error ``interp/inversion/<layer>/relative_error``. ``result`` is a
    :class:`~interp.optvis.Reconstruction`.

    Args:
        layer: the layer whose representation is inverted.
        settings: an :class:`~interp.steps.inversion.InversionSettings` (``n_examples``, ``steps``, ``lr``, ...,
            where their defaults and docs live), a mapping of them, or None (the defaults).
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: as for
            :class:`~interp.callbacks.base.InterpretationCallback`.
        changes: settings by name, over ``settings`` (``n_examples=2``, ``steps=20``).

    Raises:
        SettingsError: a name that is not a setting, or a value that cannot work.
    """

    Settings = InversionSettings
    result: Reconstruction | None

    def __init__(
        self,
        layer: str,
        settings: InversionSettings | Mapping[str, Any] | None = None,
        *,
        split: str = "test",
        dataset: Dataset | None = None,
        every_n_epochs: int = 0,
        run_on_train_end: bool = True,
        on_error: str = "warn",
        progress: bool = True,
        **changes: Any,
    ):
        super().__init__(
            layer,
            split=split,
            dataset=dataset,
            every_n_epochs=every_n_epochs,
            run_on_train_end=run_on_train_end,
            on_error=on_error,
            progress=progress,
        )
        self.settings = InversionSettings.build(settings, "Inversion", **changes)

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Reconstruction:
        assert dataset is not None
        return inversion(model, dataset, reporter, self.layer, self.settings, step=step, progress=progress)
