"""DeepDream (Mordvintsev et al. 2015, "Inceptionism"): gradient ascent on a photo.

An octave pyramid (the detail found at a small scale is carried up to the next), a random roll
(circular shift) at every step, steps normalized by the mean absolute gradient, pixels kept in [0, 1].
Images larger than ``tile_size`` are processed tile by tile; the random roll moves the tile
borders every step, so no seams remain and memory is bounded by one tile.

::

    from interp.optvis import dream
    result = dream(model, photo, "layer3")   # photo: [3, H, W] or [B, 3, H, W] in [0, 1]
    result.image
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from interp.optvis import objectives as obj
from interp.optvis.capture import Capture, frozen, model_device
from interp.optvis.inputs import as_image_batch
from interp.optvis.progress import progress_bar


@dataclass
class Dream:
    """What :func:`dream` returns (tensors on the CPU).

    Attributes:
        image: the final images, [B, C, H, W] in [0, 1].
        octaves: the image at the end of each octave, smallest first.
        history: the objective at each step (summed over tiles), [steps, B].
    """

    image: torch.Tensor
    octaves: list[torch.Tensor]
    history: torch.Tensor


def _tiles(size: int, tile: int) -> list[tuple[int, int]]:
    if size <= tile:
        return [(0, size)]
    n = -(-size // tile)
    edges = [round(i * size / n) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def dream_gradient(
    cap: Capture, objective: obj.Objective, x: torch.Tensor, tile_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``objective`` with respect to the image ``x``, computed tile by tile.

    An image that fits one tile is one forward/backward pass.

    Args:
        cap: an active :class:`~interp.optvis.capture.Capture` of the objective's layers.
        objective: the objective (one score per batch row).
        x: the images, [B, C, H, W].
        tile_size: the largest tile side.

    Returns:
        ``(gradient like x, objective summed over tiles [B])``.

    Raises:
        FloatingPointError: the objective is not finite.
    """
    grad = torch.zeros_like(x)
    total = torch.zeros(x.shape[0], device=x.device)
    for y0, y1 in _tiles(x.shape[-2], tile_size):
        for x0, x1 in _tiles(x.shape[-1], tile_size):
            tile = x[..., y0:y1, x0:x1].detach().requires_grad_(True)
            acts = cap(tile)
            acts[obj.INPUT] = tile
            score = objective(acts)
            if not torch.isfinite(score).all():
                raise FloatingPointError(f"objective {objective.name} is not finite: {score.detach().cpu().tolist()}")
            (g,) = torch.autograd.grad(score.sum(), tile)
            grad[..., y0:y1, x0:x1] = g
            total += score.detach()
    return grad, total


def octave_sizes(h: int, w: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """The (height, width) of each octave of :func:`dream`, smallest first; the last is (h, w).

    Args:
        h: image height.
        w: image width.
        octaves: number of octaves.
        scale: size ratio between neighbouring octaves.

    Returns:
        The sizes, each side at least 1.

    >>> octave_sizes(100, 100, 3, 2.0)
    [(25, 25), (50, 50), (100, 100)]
    """
    sizes = []
    for i in range(octaves):
        f = scale ** (octaves - 1 - i)
        sizes.append((max(1, round(h / f)), max(1, round(w / f))))
    return sizes


def dream(
    model: nn.Module,
    image: torch.Tensor,
    objective: obj.Objective | str,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps_per_octave: int = 10,
    step_size: float = 1.5,
    roll: int = 32,
    tile_size: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> Dream:
    """Dream ``image`` towards ``objective``.

    ``image`` follows the image contract of :func:`interp.optvis.inputs.as_image_batch`: a float
    tensor [C, H, W] or [B, C, H, W] in [0, 1], a uint8 tensor, an HWC array or a PIL image; float
    values outside [0, 1] are refused (they used to be clamped silently).

    Args:
        model: any ``nn.Module`` taking images in [0, 1] (runs frozen, in eval mode).
        image: the images to dream on (see above).
        objective: an Objective, or a layer name for the classic ``layer_l2`` objective.
        octaves, octave_scale: pyramid depth and the size ratio between octaves.
        steps_per_octave: gradient steps at each octave.
        step_size: step in 0-255 pixel units per unit of normalized gradient, as in the original
            (each step moves pixels by ``step_size / 255 * g / mean|g|``).
        roll: largest random circular shift in pixels (each direction), undone after the step.
        tile_size: largest tile processed at once.
        seed: seeds the rolls.
        progress: show a tqdm bar.

    Returns:
        The final images, the image of each octave and the objective per step.

    Raises:
        ValueError: ``octaves < 1``, ``steps_per_octave < 0``, or an image outside the image contract.
    """
    objective = obj.as_objective(objective)
    image = as_image_batch(image, "image")
    if octaves < 1 or steps_per_octave < 0:
        raise ValueError("octaves must be >= 1 and steps_per_octave >= 0")
    device = model_device(model)
    base = image.to(device)
    generator = torch.Generator().manual_seed(seed)
    sizes = octave_sizes(base.shape[-2], base.shape[-1], octaves, octave_scale)
    detail = None
    octave_images, history = [], []
    total_steps = octaves * steps_per_octave
    with (
        progress_bar(total_steps, progress, "dream") as bar,
        frozen(model),
        Capture(model, objective.model_layers) as cap,
    ):
        for size in sizes:
            if size != tuple(base.shape[-2:]):
                octave_base = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
            else:
                octave_base = base
            if detail is None:
                detail = torch.zeros_like(octave_base)
            elif detail.shape[-2:] != octave_base.shape[-2:]:
                detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            x = (octave_base + detail).clamp(0, 1)
            for _ in range(steps_per_octave):
                dy, dx = (int(v) - roll for v in torch.randint(2 * roll + 1, (2,), generator=generator))
                rolled = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
                grad, score = dream_gradient(cap, objective, rolled, tile_size)
                grad = torch.roll(grad, shifts=(-dy, -dx), dims=(-2, -1))
                norm = grad.abs().flatten(1).mean(1).clamp(min=1e-12).reshape(-1, 1, 1, 1)
                x = (x + (step_size / 255.0) * grad / norm).clamp(0, 1)
                history.append(score.cpu())
                bar.update(1)
            detail = x - octave_base
            octave_images.append(x.detach().cpu())
    hist = torch.stack(history) if history else torch.zeros(0, base.shape[0])
    return Dream(x.detach().cpu(), octave_images, hist)
