"""``EmbeddingProjector``: a layer's activations in TensorBoard's projector, and a t-SNE picture."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.report import Reporter
from interp.steps.projector import Embedding, ProjectorSettings, embedding_projector


class EmbeddingProjector(InterpretationCallback):
    """The activations of ``layer`` for ``n`` examples of the ``split`` set in TensorBoard's
    projector and as a t-SNE scatter (:func:`interp.steps.embedding_projector`). ``result`` is an
    :class:`~interp.steps.Embedding`.

    Args:
        layer: the layer name.
        settings: a :class:`~interp.steps.projector.ProjectorSettings` (``n``, ``tsne``, ``seed``, where their
            defaults and docs live), a mapping of them, or None (the defaults).
        split, dataset, every_n_epochs, run_on_train_end, on_error, progress: as for
            :class:`~interp.callbacks.base.InterpretationCallback`.
        changes: settings by name, over ``settings`` (``n=200``, ``tsne=False``).

    Raises:
        SettingsError: a name that is not a setting, or a value that cannot work.
    """

    Settings = ProjectorSettings
    default_split = "test"
    result: Embedding | None

    def interpret(
        self,
        model: nn.Module,
        dataset: Dataset | None,
        reporter: Reporter,
        step: int,
        others: list[Any],
        progress: bool,
    ) -> Embedding:
        assert dataset is not None
        return embedding_projector(model, dataset, reporter, self.layer, self.settings, split=self.split, step=step)
