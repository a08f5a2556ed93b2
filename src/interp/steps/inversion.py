"""Inversion: test examples reconstructed from a layer's representation (Mahendran & Vedaldi)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from interp.optvis import Reconstruction, invert
from interp.optvis.param import unit_seeds
from interp.report import Reporter, grid, titled_row
from interp.steps.common import check_layer, example_input, gather_shares, my_share


def inversion(
    model: nn.Module,
    dataset: Dataset,
    reporter: Reporter,
    *,
    layer: str,
    n_examples: int = 8,
    steps: int = 400,
    lr: float = 0.05,
    lambda_tv: float = 1e-4,
    lambda_alpha: float = 1e-5,
    seed: int = 0,
    step: int = 0,
    progress: bool = False,
) -> Reconstruction:
    """Invert the first ``n_examples`` of ``dataset`` from ``layer`` and log them beside the originals.

    Logs ``inversion/<layer>`` (originals above, reconstructions below) and ``.../relative_error`` (the mean relative
    representation error). Under torch.distributed each rank inverts its share of the examples; each example's start
    is seeded on its own, so the result does not depend on the number of ranks.

    Args:
        model: the network.
        dataset: the data set; its first ``n_examples`` items are inverted.
        reporter: where the picture and the scalar go.
        layer: the layer whose representation is inverted.
        n_examples: number of examples.
        steps: optimization steps (:func:`~interp.optvis.invert.invert`).
        lr: Adam's learning rate.
        lambda_tv: weight of the total variation.
        lambda_alpha: weight of the alpha-norm.
        seed: seeds the starts.
        step: the global step everything is logged at.
        progress: show a tqdm bar.

    Returns:
        The reconstructions of all examples.

    Raises:
        InterpError: an unknown layer or an empty data set.
    """
    check_layer(model, layer)
    images = example_input(dataset, n_examples)
    share = my_share(list(range(len(images))))  # under torch.distributed each rank inverts its share
    part = None
    if share:
        part = invert(
            model,
            layer,
            images[share],
            steps=steps,
            lr=lr,
            lambda_tv=lambda_tv,
            lambda_alpha=lambda_alpha,
            seed=seed,
            row_seeds=unit_seeds(seed, share),
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
