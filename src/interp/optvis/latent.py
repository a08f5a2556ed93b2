"""Feature visualization in the latent space of a learned image prior.

:class:`LatentParam` is an image parameterization like ``param.image``: ``forward()`` returns
``decoder(z)`` for a learned code ``z`` [B, latent_dim], so ``render`` and ``render_units``
optimize the code instead of pixels and every image is one the prior can draw. ``z`` is kept in
a trust region (a ball of radius ``max_norm``, where the prior has mass), and
:meth:`LatentParam.latent_penalty` is an objective term that pulls it towards the prior's mode::

    from interp.models.prior import train_prior          # or any decoder nn.Module
    from interp.optvis import render_units
    from interp.optvis.latent import LatentParam
    prior = train_prior(datamodule, seed=0)
    view = LatentParam(prior.decoder, batch=16, latent_dim=prior.latent_dim, seed=0)
    result = render_units(model, "dense_1", range(16), param=view,
                          regularizer=-1e-3 * view.latent_penalty())

Pure torch: the decoder is any ``nn.Module`` mapping [B, latent_dim] to images in [0, 1].
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.param import Seeds, seeded_randn

__all__ = ["LatentParam", "default_max_norm", "frozen_copy"]


def default_max_norm(latent_dim: int, sigmas: float = 3.0) -> float:
    """The trust-region radius: the typical norm of a code drawn from N(0, I) in ``latent_dim``
    dimensions (``sqrt(latent_dim)``) plus ``sigmas`` standard deviations of that norm (the chi
    distribution's standard deviation is about ``1/sqrt(2)``): about 6.1 for 16 dimensions.

    >>> round(default_max_norm(16), 2)
    6.12
    """
    return math.sqrt(latent_dim) + sigmas / math.sqrt(2.0)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode whose parameters are buffers: it follows ``.to()``
    and ``state_dict()`` but ``parameters()`` (what an optimizer sees) no longer lists them, and
    the original is left untouched."""
    module = copy.deepcopy(module).eval()
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            del sub._parameters[name]
            sub.register_buffer(name, None if p is None else p.detach())
    return module


class LatentParam(nn.Module):
    """Images ``decoder(z)`` of a learned latent code ``z`` [batch, latent_dim].

    Args:
        decoder: ``nn.Module`` from [B, latent_dim] to images [B, C, H, W] in [0, 1]. A frozen copy is
            kept (:func:`frozen_copy`), so the optimizer trains ``z`` only and the prior is unchanged.
        batch: number of images (one per unit for ``render_units``).
        latent_dim: size of ``z`` (default ``decoder.latent_dim``).
        seed: seeds the initial code, drawn from N(0, init_sd^2 I); one seed per row (a sequence)
            makes each row's code independent of the others.
        max_norm: trust region: before every decode ``z`` is projected onto the ball of this
            radius (projected gradient ascent). ``None`` means :func:`default_max_norm`;
            ``float('inf')`` turns it off.
        init_sd: standard deviation of the initial code.

    >>> decoder = nn.Sequential(nn.Linear(4, 36), nn.Sigmoid(), nn.Unflatten(1, (1, 6, 6)))
    >>> view = LatentParam(decoder, batch=3, latent_dim=4, seed=0)
    >>> img = view()
    >>> img.shape, bool(img.min() >= 0), bool(img.max() <= 1), [n for n, _ in view.named_parameters()]
    (torch.Size([3, 1, 6, 6]), True, True, ['z'])
    """

    def __init__(
        self,
        decoder: nn.Module,
        batch: int = 1,
        latent_dim: int | None = None,
        seed: Seeds = 0,
        max_norm: float | None = None,
        init_sd: float = 1.0,
    ):
        super().__init__()
        if latent_dim is None:
            latent_dim = getattr(decoder, "latent_dim", None)
            if latent_dim is None:
                raise ValueError("pass latent_dim: the decoder has no latent_dim attribute")
        self.latent_dim = int(latent_dim)
        self.batch = int(batch)
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.max_norm = float(default_max_norm(self.latent_dim) if max_norm is None else max_norm)
        if self.max_norm <= 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.decoder = frozen_copy(decoder)
        z = seeded_randn((self.batch, self.latent_dim), seed) * float(init_sd)
        self.z = nn.Parameter(self._project(z))
        device = next(iter(self.decoder.buffers()), torch.empty(0)).device
        with torch.no_grad():
            self.shape = tuple(self.decoder(self.z.detach()[:1].to(device)).shape[1:])
        self.shape = (self.batch, *self.shape)

    def train(self, mode: bool = True) -> LatentParam:
        super().train(mode)
        self.decoder.eval()  # dropout or batch norm in a decoder must not change the images
        return self

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        norm = z.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return z * (self.max_norm / norm).clamp(max=1.0)

    def latent(self) -> torch.Tensor:
        """The code inside the trust region, [batch, latent_dim]."""
        return self._project(self.z)

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            self.z.copy_(self._project(self.z))
        x = self.decoder(self.z)
        return x + (x.clamp(0.0, 1.0) - x).detach()

    def latent_penalty(self) -> obj.Objective:
        """``0.5 * ||z||^2`` per row (minus the prior's log-density, up to a constant), as an
        objective to subtract: ``channel(...) - 1e-3 * view.latent_penalty()``. It reads the
        parameterization's current code, not an activation."""
        return obj.Objective(lambda acts: 0.5 * self.z.pow(2).sum(1), [obj.INPUT], "latent_penalty")
