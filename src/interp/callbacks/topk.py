"""``TopKExamples``: the data set's maximal-activation examples for units of a layer."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from interp.callbacks.base import InterpretationCallback, sequential_loader, shared_results, unit_tag
from interp.optvis.topk import TopK, all_gather_topk, mine_topk, shard_range
from interp.report import grid, topk_images


def mine_for_trainer(trainer, pl_module, layer: str, units: list[int], k: int, dataset: Dataset, batch_size: int,
                     largest: bool = True, spatial: str = "max", progress: bool = False) -> TopK:
    """Mine ``dataset`` for ``units``; under DDP each rank mines its shard and the results are
    merged exactly (every rank gets the global top-k)."""
    world = trainer.world_size
    n = len(dataset)
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        start, stop = shard_range(n, trainer.global_rank, world, align=batch_size)
        if start == stop:
            # More ranks than batches: this rank has nothing to mine, but it must still take part
            # in the gather. Mine one example for the shapes and send an empty result.
            probe = mine_topk(pl_module, layer, sequential_loader(dataset, 1, 0, 1), k=1, units=units,
                              spatial=spatial, largest=largest)
            positions = None if probe.positions is None else probe.positions[:, :0]
            part = TopK(probe.values[:, :0], probe.indices[:, :0], positions, probe.units, layer, largest, k)
        else:
            part = mine_topk(pl_module, layer, sequential_loader(dataset, batch_size, start, stop), k=k, units=units,
                             spatial=spatial, largest=largest, index_offset=start, progress=False)
        return all_gather_topk(part)
    return mine_topk(pl_module, layer, sequential_loader(dataset, batch_size), k=k, units=units, spatial=spatial,
                     largest=largest, progress=progress)


class TopKExamples(InterpretationCallback):
    """Log, for each unit, the grid of the ``k`` training examples that activate it most.

    Tags: ``interp/topk/<layer>/unit_XXX`` (image) and ``.../max_activation`` (scalar). With
    ``bottom=True`` also the most negative examples (``interp/topk_bottom/...``).

    Args:
        layer, units, every_n_epochs, on_train_end, on_error: see ``InterpretationCallback``.
        k: examples per unit.
        split: which data set of the datamodule to mine (``train`` or ``test``).
        dataset: mine this map-style dataset instead of the datamodule's.
        batch_size: inference batch size.
        spatial: ``max`` or ``mean`` over positions for conv layers.
        bottom: also log the bottom-k.
    """

    kind = "topk"

    def __init__(self, layer: str, units="all", k: int = 16, split: str = "train", dataset: Dataset | None = None,
                 batch_size: int = 1024, spatial: str = "max", bottom: bool = False, progress: bool = True, **kwargs):
        super().__init__(layer, units, dataset=dataset, **kwargs)
        self.k, self.split = k, split
        self.batch_size, self.spatial, self.bottom, self.progress = batch_size, spatial, bottom, progress
        self.result: TopK | None = None

    def interpret(self, trainer, pl_module, reporter, step):
        dataset = self.data(trainer, self.split)
        units = self.resolve_units(pl_module, dataset)
        ends = [("topk", True)] + ([("topk_bottom", False)] if self.bottom else [])
        for kind, largest in ends:
            result = mine_for_trainer(trainer, pl_module, self.layer, units, self.k, dataset, self.batch_size,
                                      largest=largest, spatial=self.spatial,
                                      progress=self.progress and trainer.is_global_zero)
            if largest:
                self.result = result
                shared_results(trainer)[("topk", self.layer)] = (result, dataset)
            for row, unit in enumerate(result.units.tolist()):
                reporter.image(unit_tag(kind, self.layer, unit), grid(topk_images(result, dataset, row), min_size=0), step)
                reporter.scalar(unit_tag(kind, self.layer, unit) + "/max_activation", result.values[row, 0], step)
