"""Feature visualization in the latent space of a learned image prior.

:class:`LatentParam` is an image parameterization like ``param.image``: ``forward()`` returns
``decoder(z)`` for a learned code ``z`` [B, latent_dim], so ``render`` and ``render_units``
optimize the code instead of pixels and every image is one the prior can draw. ``z`` is kept in
a trust region: a ball of radius ``max_norm`` around the origin (where the prior has mass) and,
when the optimization starts from given codes (``start``, e.g. the codes of each unit's best
dataset examples, :func:`mean_codes`), a ball of radius ``radius`` around them, so the result stays
a variant of what the unit already responds to in the data. :meth:`LatentParam.latent_penalty` is
an objective term that pulls ``z`` towards the prior's mode::

    from interp.models.prior import train_prior          # or any decoder nn.Module
    from interp.optvis import render_units
    from interp.optvis.latent import LatentParam, mean_codes
    prior = train_prior(datamodule, seed=0)
    view = LatentParam(prior.decoder, batch=16, latent_dim=prior.latent_dim, seed=0)
    result = render_units(model, "dense_1", range(16), param=view, transforms=None)
    # starting from each unit's top examples (images [16 units, k, 1, 28, 28]):
    view = LatentParam(prior.decoder, batch=16, start=mean_codes(prior.encode, top_images))

Pure torch: the decoder is any ``nn.Module`` mapping [B, latent_dim] to images in [0, 1].
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.param import Seeds, seeded_randn

__all__ = ["LatentParam", "default_max_norm", "default_radius", "frozen_copy", "mean_codes"]


def default_max_norm(latent_dim: int) -> float:
    """The outer trust region's radius: twice the typical norm of a code drawn from N(0, I).

    In ``latent_dim`` dimensions that norm is about ``sqrt(latent_dim)``, with a standard deviation of about
    ``1/sqrt(2)``: the radius is 8 for 16 dimensions, where N(0, I) puts no measurable mass beyond, so the optimum may
    leave the bulk of the prior but not go arbitrarily far out.

    Args:
        latent_dim: size of the code.

    Returns:
        ``2 * sqrt(latent_dim)``.

    >>> default_max_norm(16)
    8.0
    """
    return 2.0 * math.sqrt(latent_dim)


def default_radius(latent_dim: int) -> float:
    """The radius of the ball around the starting codes (when they are given): half the typical norm of a prior code.

    2 for 16 dimensions: far enough to reach past the best example, near enough to stay a variant of it (chosen on
    ``dense_1`` units 64-191 of the MNIST MLP, benchmarks/legibility.py).

    Args:
        latent_dim: size of the code.

    Returns:
        ``0.5 * sqrt(latent_dim)``.

    >>> default_radius(16)
    2.0
    """
    return 0.5 * math.sqrt(latent_dim)


@torch.no_grad()
def mean_codes(encode, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The mean latent code of each group of images.

    ``images`` [U, K, C, H, W] (K images per unit, e.g. its top-k examples; floats in [0, 1] or uint8) to
    [U, latent_dim].

    Args:
        encode: maps images [B, C, H, W] to codes [B, latent_dim], or to a tuple whose first item is the mean code
            (``ImagePrior.encode`` returns (mean, log-variance)).
        images: the groups of images, [U, K, C, H, W].
        batch_size: images per call of ``encode``.

    Returns:
        The mean codes, [U, latent_dim].

    Raises:
        ValueError: ``images`` is not 5-D.

    >>> enc = lambda x: (x.flatten(1)[:, :2], None)
    >>> mean_codes(enc, torch.arange(8.0).reshape(2, 2, 2, 1, 1))
    tensor([[1., 2.],
            [5., 6.]])
    """
    if images.dim() != 5:
        raise ValueError(f"images must be [units, k, C, H, W], got {tuple(images.shape)}")
    units, k = images.shape[:2]
    flat = images.reshape(units * k, *images.shape[2:])
    if flat.dtype == torch.uint8:
        flat = flat.float() / 255.0
    codes = []
    for i in range(0, len(flat), batch_size):
        out = encode(flat[i : i + batch_size].float())
        codes.append(out[0] if isinstance(out, (tuple, list)) else out)
    return torch.cat(codes).reshape(units, k, -1).mean(1)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode whose parameters are buffers.

    It follows ``.to()`` and ``state_dict()`` but ``parameters()`` (what an optimizer sees) no longer lists them, and
    the original is left untouched.

    Args:
        module: the module to copy.

    Returns:
        The frozen copy.
    """
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
            makes each row's code independent of the others. Unused when ``start`` is given.
        max_norm: trust region: before every decode ``z`` is projected onto the ball of this
            radius around the origin (projected gradient ascent). ``None`` means
            :func:`default_max_norm`; ``float('inf')`` turns it off.
        init_sd: standard deviation of the initial code.
        start: optional starting codes [batch, latent_dim] (e.g. :func:`mean_codes` of each unit's
            top examples). ``z`` starts there and stays within ``radius`` of them (projected onto
            that ball, then onto the one of ``max_norm``).
        radius: the ball around ``start`` (``None``: :func:`default_radius`; ``float('inf')``:
            none). Ignored without ``start``.

    Raises:
        ValueError: no ``latent_dim`` (given or on the decoder), ``batch < 1``, a non-positive ``max_norm`` or
            ``radius``, or ``start`` of the wrong shape.

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
        start: torch.Tensor | None = None,
        radius: float | None = None,
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
        self.radius = float(default_radius(self.latent_dim) if radius is None else radius)
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")
        self.decoder = frozen_copy(decoder)
        if start is not None:
            start = start.detach().float().cpu().clone()
            if tuple(start.shape) != (self.batch, self.latent_dim):
                raise ValueError(
                    f"start must be [batch, latent_dim] = [{self.batch}, {self.latent_dim}], got {tuple(start.shape)}"
                )
        self.start: torch.Tensor | None
        self.register_buffer("start", start)
        z = seeded_randn((self.batch, self.latent_dim), seed) * float(init_sd) if start is None else start.clone()
        self.z = nn.Parameter(self._project(z))
        device = next(iter(self.decoder.buffers()), torch.empty(0)).device
        with torch.no_grad():
            self.shape = tuple(self.decoder(self.z.detach()[:1].to(device)).shape[1:])
        self.shape = (self.batch, *self.shape)

    def train(self, mode: bool = True) -> LatentParam:
        """Set the mode as ``nn.Module.train`` does, keeping the decoder in eval mode.

        Dropout or batch norm in a decoder must not change the images.

        Args:
            mode: training mode (``True``) or eval mode.

        Returns:
            ``self``.
        """
        super().train(mode)
        self.decoder.eval()  # dropout or batch norm in a decoder must not change the images
        return self

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        if self.start is not None and math.isfinite(self.radius):
            start = self.start.to(z.device)
            step = z - start
            norm = step.norm(dim=1, keepdim=True).clamp(min=1e-12)
            z = start + step * (self.radius / norm).clamp(max=1.0)
        norm = z.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return z * (self.max_norm / norm).clamp(max=1.0)

    def latent(self) -> torch.Tensor:
        """The code inside the trust region.

        Returns:
            The projected code, [batch, latent_dim].
        """
        return self._project(self.z)

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            self.z.copy_(self._project(self.z))
        x = self.decoder(self.z)
        return x + (x.clamp(0.0, 1.0) - x).detach()

    def latent_penalty(self) -> obj.Objective:
        """``0.5 * ||z||^2`` per row (minus the prior's log-density, up to a constant), as an objective to subtract.

        For example ``channel(...) - 1e-3 * view.latent_penalty()``. It reads the parameterization's current code,
        not an activation.

        Returns:
            The objective.
        """
        return obj.Objective(lambda acts: 0.5 * self.z.pow(2).sum(1), [obj.INPUT], "latent_penalty")
