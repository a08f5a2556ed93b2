"""``Inversion``: reconstruct test examples from a layer's representation (Mahendran & Vedaldi)."""

from __future__ import annotations

import torch

from interp.callbacks.base import InterpretationCallback, example_input
from interp.optvis import invert
from interp.report import grid, titled_row


class Inversion(InterpretationCallback):
    """Invert ``n_examples`` examples of the ``split`` set from ``layer`` and log
    ``interp/inversion/<layer>`` (originals above, reconstructions below) and the mean relative
    representation error ``interp/inversion/<layer>/relative_error``."""

    kind = "inversion"

    def __init__(self, layer: str, n_examples: int = 8, split: str = "test", steps: int = 400, lr: float = 0.05,
                 lambda_tv: float = 1e-4, lambda_alpha: float = 1e-5, seed: int = 0, **kwargs):
        super().__init__(layer, None, **kwargs)
        self.n_examples, self.split, self.steps, self.lr = n_examples, split, steps, lr
        self.lambda_tv, self.lambda_alpha, self.seed = lambda_tv, lambda_alpha, seed
        self.result = None

    def interpret(self, trainer, pl_module, reporter, step):
        images = example_input(self.data(trainer, self.split), self.n_examples)
        result = invert(pl_module, self.layer, images, steps=self.steps, lr=self.lr, lambda_tv=self.lambda_tv,
                        lambda_alpha=self.lambda_alpha, seed=self.seed)
        self.result = result
        n = images.shape[0]
        both = torch.cat([images, result.image])
        picture = titled_row([grid(both, nrow=n, min_size=56)], [f"originals (top) | reconstructions from {self.layer} (bottom)"])
        reporter.image(f"interp/inversion/{self.layer}", picture, step)
        reporter.scalar(f"interp/inversion/{self.layer}/relative_error", result.error.mean(), step)
