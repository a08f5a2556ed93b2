"""Inversion: test examples reconstructed from a layer's representation (Mahendran & Vedaldi)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.optvis import Reconstruction, invert
from interp.optvis.param import unit_seeds
from interp.report import Reporter, grid, titled_row
from interp.settings import Settings
from interp.steps.common import check_layer, example_input, gather_shares, my_share


@dataclass(frozen=True)
class InversionSettings(Settings):
    """What decides the reconstructions of :func:`inversion` (:func:`~interp.optvis.invert.invert`).

    Attributes:
        n_examples: the first ``n_examples`` examples of the data set are inverted.
        steps: optimization steps.
        lr: Adam's learning rate.
        lambda_tv: weight of the total variation.
        lambda_alpha: weight of the alpha-norm.
        seed: seeds the starts (each example's on its own, so the result does not depend on the number of ranks).
    """

    n_examples: int = 8
    steps: int = 400
    lr: float = 0.05
    lambda_tv: float = 1e-4
    lambda_alpha: float = 1e-5
    seed: int = 0

    def check(self) -> None:
        """Refuse values that cannot work (``n_examples=0``, ``steps=0``, a negative weight).

        Raises:
            SettingsError: a value that cannot work.
        """
        self.at_least("n_examples", 1)
        self.at_least("steps", 1)
        self.finite("lr", 0.0)
        self.finite("lambda_tv", 0.0)
        self.finite("lambda_alpha", 0.0)


def inversion(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    layer: str,
    settings: InversionSettings | None = None,
    *,
    step: int = 0,
    progress: bool = False,
) -> Reconstruction:
    """Invert the first ``settings.n_examples`` of ``dataset`` from ``layer`` and log them beside the originals.

    Logs ``inversion/<layer>`` (originals above, reconstructions below) and ``.../relative_error`` (the mean relative
    representation error). Under torch.distributed each rank inverts its share of the examples; each example's start
    is seeded on its own, so the result does not depend on the number of ranks.

    Args:
        model: the network.
        dataset: the data set; its first ``n_examples`` items are inverted.
        reporter: where the picture and the scalar go.
        layer: the layer whose representation is inverted.
        settings: the :class:`InversionSettings` (None: the defaults).
        step: the global step everything is logged at.
        progress: show a tqdm bar.

    Returns:
        The reconstructions of all examples.

    Raises:
        InterpError: an unknown layer or an empty data set.
    """
    s = settings or InversionSettings()
    check_layer(model, layer)
    images = example_input(dataset, s.n_examples)
    share = my_share(list(range(len(images))))  # under torch.distributed each rank inverts its share
    part = None
    if share:
        part = invert(
            model,
            layer,
            images[share],
            steps=s.steps,
            lr=s.lr,
            lambda_tv=s.lambda_tv,
            lambda_alpha=s.lambda_alpha,
            seed=s.seed,
            row_seeds=unit_seeds(s.seed, share),
            progress=progress,
        )
    parts = [p for p in gather_shares(part) if p is not None]
    result = Reconstruction(
        torch.cat([p.image for p in parts]),
        torch.cat([p.error for p in parts]),
        torch.cat([p.history for p in parts], 1),
    )
    both = torch.cat([images, result.image])
    picture = titled_row(
        [grid(both, nrow=images.shape[0], min_size=56)], [f"originals (top) | reconstructions from {layer} (bottom)"]
    )
    reporter.image(
        f"inversion/{layer}",
        picture,
        step,
        description=f"Test examples (top) and the images found from their {layer} representation alone (bottom).",
    )
    reporter.scalar(f"inversion/{layer}/relative_error", float(result.error.mean()), step)
    return result
