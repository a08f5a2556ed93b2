"""``EmbeddingProjector``: a layer's activations in TensorBoard's projector, and a t-SNE picture."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback
from interp.report import Reporter
from interp.steps.projector import Embedding, embedding_projector


class EmbeddingProjector(InterpretationCallback):
    """The activations of ``layer`` for ``n`` examples of the ``split`` set in TensorBoard's
    projector and as a t-SNE scatter (:func:`interp.steps.embedding_projector`). ``result`` is an
    :class:`~interp.steps.Embedding`.

    Args:
        layer: the layer name.
        n: number of examples (the first of the data set).
        tsne: also draw the t-SNE scatter.
        seed: t-SNE's random state.
    split, dataset, every_n_epochs, run_on_train_end, on_error, progress: as for
        :class:`~interp.callbacks.base.InterpretationCallback`.
    """

    result: Embedding | None

    def __init__(
        self,
        layer: str,
        n: int = 1000,
        tsne: bool = True,
        seed: int = 0,
        *,
        split: str = "test",
        dataset: Dataset | None = None,
        every_n_epochs: int = 0,
        run_on_train_end: bool = True,
        on_error: str = "warn",
        progress: bool = True,
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
        self.n, self.tsne, self.seed = n, tsne, seed

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
        return embedding_projector(
            model,
            dataset,
            reporter,
            layer=self.layer,
            n=self.n,
            tsne=self.tsne,
            seed=self.seed,
            split=self.split,
            step=step,
        )
