"""Representation inversion (Mahendran & Vedaldi 2015, "Understanding deep image
representations by inverting them").

Starting from noise, find an image ``x`` whose representation at ``layer`` matches a target:
minimize ``||phi(x) - phi0||^2 / ||phi0||^2 + lambda_alpha * N_alpha(x) + lambda_tv * TV^beta(x)``.

::

    result = invert(model, "dense_1", digits)   # digits [N, 1, 28, 28] in [0, 1]
    result.image, result.error                  # reconstructions, relative error per item
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.capture import Capture, frozen, model_device
from interp.optvis.inputs import as_image_batch
from interp.optvis.param import image as image_param
from interp.optvis.progress import progress as progress_iter
from interp.optvis.transforms import Roll


@dataclass
class Reconstruction:
    """What :func:`invert` returns (tensors on the CPU).

    Attributes:
        image: the reconstructions, [B, C, H, W] in [0, 1].
        error: the final relative representation error ``||phi(x) - phi0||^2 / ||phi0||^2`` per item, [B].
        history: the loss per step, [steps, B].
    """

    image: torch.Tensor
    error: torch.Tensor
    history: torch.Tensor


def invert(
    model: nn.Module,
    layer: str,
    images: torch.Tensor | None = None,
    *,
    activations: torch.Tensor | None = None,
    shape: tuple[int, ...] | None = None,
    steps: int = 400,
    lr: float = 0.05,
    alpha: float = 6.0,
    beta: float = 2.0,
    lambda_alpha: float = 1e-5,
    lambda_tv: float = 1e-4,
    roll: int = 0,
    seed: int = 0,
    row_seeds: Sequence[int] | None = None,
    progress: bool = False,
) -> Reconstruction:
    """Reconstruct inputs from their representation at ``layer`` (Mahendran and Vedaldi 2015).

    Give either ``images`` ([B, C, H, W] or [C, H, W] in [0, 1]: their activations are the target)
    or ``activations`` of ``layer`` together with ``shape`` (B, C, H, W) of the images to find.
    The loss of each image is the relative representation error plus ``lambda_alpha`` times the
    alpha-norm (:func:`~interp.optvis.objectives.alpha_norm`) and ``lambda_tv`` times the total variation
    (:func:`~interp.optvis.objectives.total_variation`) of the image, minimized with Adam on a pixel
    parameterization.

    Args:
        model: any ``nn.Module`` taking images in [0, 1] (runs frozen, in eval mode).
        layer: the layer whose representation is inverted.
        images: the images whose representation is the target.
        activations: the target representation itself, ``[B, ...]`` (instead of ``images``).
        shape: (B, C, H, W) of the images to find; needed with ``activations``.
        steps: optimization steps.
        lr: Adam's learning rate.
        alpha: exponent of the alpha-norm regularizer.
        beta: exponent of the total-variation regularizer.
        lambda_alpha: weight of the alpha-norm.
        lambda_tv: weight of the total variation.
        roll: the largest random circular shift (pixels) applied before each step (drawn from ``seed``).
        seed: seeds the shifts and, without ``row_seeds``, the start.
        row_seeds: one seed per image for its start, so an image's reconstruction does not depend on the
            others in the batch.
        progress: show a tqdm bar.

    Returns:
        The reconstructions, their errors and the loss history.

    Raises:
        ValueError: both or neither of ``images`` and ``activations``, or ``activations`` without ``shape``.
        FloatingPointError: the loss is not finite.
    """
    if (images is None) == (activations is None):
        raise ValueError("give exactly one of images=... or activations=...")
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    with frozen(model), Capture(model, [layer]) as cap:
        if activations is not None:
            phi0 = activations.detach().to(device)
            if shape is None:
                raise ValueError("inverting activations needs shape=(B, C, H, W) of the images")
            shape = tuple(shape)
        else:
            assert images is not None
            batch = as_image_batch(images, "images").to(device)
            with torch.no_grad():
                phi0 = cap(batch)[layer]
            shape = tuple(batch.shape)
        dims = tuple(range(1, phi0.dim()))
        norm0 = phi0.pow(2).sum(dims).clamp(min=1e-12)
        start_seed = seed if row_seeds is None else list(row_seeds)
        param = image_param(shape, fft=False, decorrelate=False, sd=0.5, seed=start_seed).to(device)
        opt = torch.optim.Adam(param.parameters(), lr=lr)
        shift = Roll(roll)
        alpha_reg, tv_reg = obj.alpha_norm(alpha), obj.total_variation(beta)
        history = []
        for _ in progress_iter(range(steps), progress, "invert"):
            opt.zero_grad(set_to_none=True)
            x = param()
            phi = cap(shift(x, generator))[layer]
            err = (phi - phi0).pow(2).sum(dims) / norm0
            reg = {obj.INPUT: x}
            loss = err + lambda_alpha * alpha_reg(reg) + lambda_tv * tv_reg(reg)
            if not torch.isfinite(loss).all():
                raise FloatingPointError(f"inversion loss is not finite: {loss.detach().cpu().tolist()}")
            loss.sum().backward()
            opt.step()
            history.append(loss.detach())
        with torch.no_grad():
            x = param()
            final_error = ((cap(x)[layer] - phi0).pow(2).sum(dims) / norm0).cpu()
    return Reconstruction(x.detach().cpu(), final_error, torch.stack(history).cpu() if history else torch.zeros(0))
