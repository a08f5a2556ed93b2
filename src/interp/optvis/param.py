"""Image parameterizations: ``nn.Module``s whose ``forward()`` returns images in [0, 1].

``image(shape)`` builds the usual one: a Fourier (spectral) basis with 1/f^decay scaling, a colour
decorrelation for 3-channel images, and a sigmoid. Every parameterization holds its tensors as
parameters and buffers, so ``.to(device)`` and ``state_dict()`` work and nothing depends on a
global device. Randomness comes from a ``torch.Generator`` (``seed``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

import torch
from torch import nn

# Square root of the colour covariance of ImageNet RGB pixels (the matrix Lucid and Lucent use).
IMAGENET_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


Seeds = int | Sequence[int] | None


def seeded_randn(shape: Sequence[int], seed: Seeds) -> torch.Tensor:
    """Standard normal values of ``shape``, from seeded generators.

    With one seed per row (a sequence as long as the batch), row ``i`` is drawn from its own generator, so a row's
    values do not depend on the other rows.

    Args:
        shape: the shape; its first entry is the batch.
        seed: an int seeds one generator; a sequence gives each row its own (a row's values then do not depend on the
            others); ``None`` draws a fresh seed.

    Returns:
        The values, float32.

    Raises:
        ValueError: a sequence of seeds whose length is not ``shape[0]``.

    >>> a, b = seeded_randn((2, 3), [5, 6]), seeded_randn((1, 3), [6])
    >>> torch.equal(a[1], b[0])
    True
    """
    shape = tuple(int(s) for s in shape)
    if seed is None or isinstance(seed, int):
        return torch.randn(shape, generator=_generator(seed))
    seeds = [int(s) for s in seed]
    if len(seeds) != shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=_generator(s)) for s in seeds])


def unit_seeds(seed: int, units: Sequence[int]) -> list[int]:
    """One seed per unit, from (seed, unit) alone.

    A unit's image is the same whichever batch, chunk or DDP rank renders it.

    Args:
        seed: the run's seed.
        units: the unit indices.

    Returns:
        ``seed * 1_000_003 + unit`` for each unit.

    >>> unit_seeds(0, [3, 7])
    [3, 7]
    """
    return [int(seed) * 1_000_003 + int(u) for u in units]


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is not None:
        g.manual_seed(seed)
    else:
        g.seed()
    return g


class PixelBasis(nn.Module):
    """One free parameter per pixel (B, C, H, W).

    Args:
        shape: (B, C, H, W) of the images.
        sd: standard deviation of the initial values.
        seed: an int seeds one generator; a sequence gives each row its own (a row's values then do not depend on the
            others); ``None`` draws a fresh seed.
    """

    def __init__(self, shape: tuple[int, int, int, int], sd: float = 0.01, seed: Seeds = 0):
        super().__init__()
        self.shape = tuple(shape)
        self.pixels = nn.Parameter(seeded_randn(self.shape, seed) * sd)

    def forward(self) -> torch.Tensor:
        return self.pixels


def _frequencies(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h).reshape(-1, 1)
    fx = torch.fft.rfftfreq(w).reshape(1, -1)
    return (fx.pow(2) + fy.pow(2)).sqrt()


class FourierBasis(nn.Module):
    """Spectral parameterization: the image is the inverse real FFT of a learned spectrum.

    Its frequencies are scaled by ``1 / f^decay_power`` (low frequencies move faster).

    Args:
        shape: (B, C, H, W) of the images.
        sd: standard deviation of the initial spectrum.
        decay_power: the exponent of the 1/f scaling.
        seed: an int seeds one generator; a sequence gives each row its own (a row's values then do not depend on the
            others); ``None`` draws a fresh seed.
    """

    scale: torch.Tensor

    def __init__(self, shape: tuple[int, int, int, int], sd: float = 0.01, decay_power: float = 1.0, seed: Seeds = 0):
        super().__init__()
        b, c, h, w = self.shape = tuple(shape)
        freqs = _frequencies(h, w)
        scale = 1.0 / freqs.clamp(min=1.0 / max(h, w)).pow(decay_power)
        scale = scale * math.sqrt(h * w)
        self.register_buffer("scale", scale.reshape(1, 1, *scale.shape))
        spectrum_shape = (b, c, h, w // 2 + 1, 2)
        self.spectrum = nn.Parameter(seeded_randn(spectrum_shape, seed) * sd)

    def forward(self) -> torch.Tensor:
        h, w = self.shape[-2:]
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")
        return image / 4.0


class ColorDecorrelation(nn.Module):
    """Maps decorrelated channels to RGB with a fixed 3x3 matrix.

    The matrix is normalized by its largest column norm, so the decorrelated space has unit scale.

    Args:
        matrix: the 3x3 matrix (default: the square root of ImageNet's colour covariance).

    Raises:
        ValueError: a matrix that is not 3x3.
    """

    matrix: torch.Tensor

    def __init__(self, matrix: torch.Tensor = IMAGENET_COLOR_SQRT):
        super().__init__()
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        if matrix.shape != (3, 3):
            raise ValueError(f"colour matrix must be 3x3, got {tuple(matrix.shape)}")
        matrix = matrix / matrix.norm(dim=0).max()
        self.register_buffer("matrix", matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bjhw->bihw", self.matrix, x)


def color_matrix_from_data(data: Iterable, max_batches: int | None = None) -> torch.Tensor:
    """Square root of the RGB covariance of the images in ``data``.

    The matrix for :class:`ColorDecorrelation` on your own data.

    Args:
        data: tensors or ``(image, ...)`` batches in [0, 1], shape (N, 3, H, W).
        max_batches: read at most this many batches.

    Returns:
        The 3x3 matrix, float32.

    Raises:
        ValueError: a batch that is not RGB, or no images.
    """
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    count = 0
    for i, batch in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"colour statistics need RGB batches (N, 3, H, W), got {tuple(x.shape)}")
        pixels = x.detach().double().permute(1, 0, 2, 3).reshape(3, -1)
        total += pixels.sum(1)
        outer += pixels @ pixels.T
        count += pixels.shape[1]
    if count == 0:
        raise ValueError("no images in data: cannot compute colour statistics")
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    sqrt = eigvecs @ torch.diag(eigvals.clamp(min=0).sqrt())
    return sqrt.float()


class ImageParam(nn.Module):
    """``basis -> [colour decorrelation] -> sigmoid or clamp``: a batch of images in [0, 1].

    Args:
        basis: a module whose ``forward()`` returns (B, C, H, W) and that records ``shape``
            (:class:`PixelBasis`, :class:`FourierBasis`).
        color: a module applied next (:class:`ColorDecorrelation`), or ``None``.
        output: ``"sigmoid"`` or ``"clamp"`` (a clamp whose gradient passes straight through).

    Raises:
        ValueError: an unknown ``output``.
    """

    def __init__(self, basis: nn.Module, color: nn.Module | None = None, output: str = "sigmoid"):
        super().__init__()
        if output not in ("sigmoid", "clamp"):
            raise ValueError(f"output must be 'sigmoid' or 'clamp', got {output!r}")
        self.basis = basis
        self.color = color
        self.output = output

    @property
    def shape(self) -> tuple[int, ...]:
        # every basis (PixelBasis, FourierBasis) records the shape of the images it makes
        """The (B, C, H, W) of the images, as the basis records it."""
        return cast("tuple[int, ...]", self.basis.shape)

    def forward(self) -> torch.Tensor:
        x = self.basis()
        if self.color is not None:
            x = self.color(x)
        if self.output == "sigmoid":
            return torch.sigmoid(x)
        return x.clamp(0.0, 1.0) if not x.requires_grad else x + (x.clamp(0.0, 1.0) - x).detach()


def image(
    shape: tuple[int, ...],
    fft: bool = True,
    decorrelate: bool = True,
    sd: float = 0.01,
    decay_power: float = 1.0,
    output: str = "sigmoid",
    color_matrix: torch.Tensor | None = None,
    seed: Seeds = 0,
) -> ImageParam:
    """The standard parameterization for a batch of images of ``shape`` (B, C, H, W) or (C, H, W).

    Colour decorrelation applies to 3-channel images only (``color_matrix`` defaults to ImageNet's).

    Args:
        shape: (B, C, H, W) or (C, H, W).
        fft: a :class:`FourierBasis` (``False``: a :class:`PixelBasis`).
        decorrelate: decorrelate the colours of 3-channel images.
        sd: standard deviation of the initial values.
        decay_power: the exponent of the Fourier basis's 1/f scaling.
        output: ``"sigmoid"`` or ``"clamp"``.
        color_matrix: the decorrelation matrix; ``None``: ImageNet's.
        seed: an int seeds one generator; a sequence gives each row its own (a row's values then do not depend on the
            others); ``None`` draws a fresh seed.

    Returns:
        The parameterization.

    Raises:
        ValueError: a shape of another rank.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"image shape must be (B, C, H, W) or (C, H, W), got {shape}")
    basis = (
        FourierBasis(shape, sd=sd, decay_power=decay_power, seed=seed) if fft else PixelBasis(shape, sd=sd, seed=seed)
    )
    color = None
    if decorrelate and shape[1] == 3:
        color = ColorDecorrelation(IMAGENET_COLOR_SQRT if color_matrix is None else color_matrix)
    return ImageParam(basis, color, output)
