"""``Inversion``: reconstruct test examples from a layer's representation (Mahendran & Vedaldi)."""

from __future__ import annotations

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
    default_split = "test"
    result: Reconstruction | None

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
