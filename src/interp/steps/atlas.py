"""The unit atlas of a run: static pages over the results the other steps saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from interp.atlas import build_atlas
from interp.optvis.receptive import ReceptiveField, box_for
from interp.settings import Settings
from interp.steps.common import model_example
from interp.steps.topk import cheap_receptive_field


@dataclass(frozen=True)
class AtlasSettings(Settings):
    """The atlas has no settings of its own: it draws what the other steps saved, with their settings.

    Attributes:
        (none)
    """

    def check(self) -> None:
        """Nothing to refuse."""


def receptive_boxes(model: nn.Module):
    """``crop_box(layer, (row, col))`` for the atlas: the input box a conv position sees.

    Fields are computed once per layer (:func:`~interp.steps.topk.cheap_receptive_field`); a layer whose field is too
    costly to measure, or that the model does not have, gets the whole image.

    Args:
        model: the network.

    Returns:
        ``crop_box(layer, position) -> (top, left, bottom, right)``.
    """
    fields: dict[str, ReceptiveField | None] = {}
    modules = {name for name, _ in model.named_modules()}

    def crop_box(layer: str, position: tuple[int, int]) -> tuple[int, int, int, int]:
        if layer not in fields:
            # A result folder of a layer this model does not have (renamed, copied from another
            # run): its examples are shown whole.
            fields[layer] = cheap_receptive_field(model, layer) if layer in modules else None
        field = fields[layer]
        if field is None:  # too costly to measure: the whole image
            example = model_example(model)
            height, width = (10**6, 10**6) if example is None else example.shape[-2:]
            return 0, 0, int(height), int(width)
        return box_for(field, position)

    return crop_box


def unit_atlas(
    model: nn.Module,
    dataset: Dataset | None,
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write ``<run_dir>/atlas/index.html`` (a page per layer and per unit) from the results of a run.

    The ``.pt`` results under ``<run_dir>/interp``; conv examples are cropped to the receptive field of their maximum.

    Args:
        model: the network the results come from.
        dataset: the data set the examples index into (``None``: the pages list indices and activations only).
        run_dir: the run's folder.
        out_dir: where to write the atlas; ``None``: ``<run_dir>/atlas``.
        progress: show a tqdm bar.

    Returns:
        The path of ``index.html``.

    Raises:
        InterpError: no results under ``<run_dir>/interp``.
    """
    return build_atlas(
        run_dir, dataset=dataset, model=model, out_dir=out_dir, progress=progress, crop_box=receptive_boxes(model)
    )
