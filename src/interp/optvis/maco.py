"""MaCo: feature visualization that optimizes only the Fourier phase (Fel et al. 2023).

The magnitude spectrum of the image is fixed (by default the average magnitude spectrum of real
images, :func:`magnitude_from_data`, or a 1/f^a law, :func:`natural_magnitude`) and only the phase
is learned, so every image the optimizer can reach has the spectral energy of natural images::

    from interp.optvis import render, objectives as obj
    from interp.optvis.maco import MacoParam, magnitude_from_data, maco_alpha
    mag = magnitude_from_data(train_images, size=(28, 28))          # [C, H, W//2+1]
    p = MacoParam((16, 1, 28, 28), mag, seed=0, track_alpha=True)
    result = render_units(model, "dense_1", range(16), param=p)
    alpha = maco_alpha(p)                                           # [16, 1, 28, 28] in [0, 1]

How the image is made (``MacoParam.spectral_image`` gives step 2, ``forward`` step 3):

1. ``phase = (theta(k) - theta(-k)) / 2`` from a free parameter ``theta`` over the full frequency
   plane: the phase is odd (``phase(-k) = -phase(k)``), so the spectrum ``magnitude * exp(i phase)``
   is Hermitian and real frequencies (DC, Nyquist) keep phase 0.
2. ``x = irfft2(magnitude * exp(i * phase), norm="ortho")``: a real image whose ``|rfft2(x)|``
   equals ``magnitude`` exactly (up to float rounding) for any phase. Since the spectrum's modulus
   is fixed, so are the image's mean (the DC term) and its standard deviation (Parseval).
3. Mapping to [0, 1]: ``output="clamp"`` (default) clips ``x`` to [0, 1] with a straight-through
   gradient; it suits magnitudes measured on [0, 1] images, for which ``x`` is already in pixel
   units. ``output="sigmoid"`` is ``sigmoid(gain * (x - mean) / std + logit(target_mean))`` with the
   per-channel constants of step 2: a fixed affine map and a sigmoid, useful for magnitudes of
   arbitrary scale.

Transparency (the paper's attribution): with ``track_alpha=True`` the parameterization adds
``|d objective / d image|`` to a buffer at every optimization step; :func:`maco_alpha` turns the
sum into an alpha map in [0, 1] showing where the image mattered to the objective.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MacoParam", "magnitude_from_data", "natural_magnitude", "maco_alpha", "apply_alpha"]


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def _full_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"image shape must be (B, C, H, W) or (C, H, W), got {shape}")
    return shape


def _negate_frequencies(x: torch.Tensor) -> torch.Tensor:
    """``x[..., (-ky) % H, (-kx) % W]``: the value at the opposite frequency, on the full plane."""
    return torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def _half_to_full(magnitude: torch.Tensor, width: int) -> torch.Tensor:
    """Expand an rfft2-shaped magnitude [..., H, W//2+1] to the full plane [..., H, W]."""
    h = magnitude.shape[-2]
    full = magnitude.new_zeros(*magnitude.shape[:-1], width)
    half = width // 2 + 1
    full[..., :half] = magnitude
    # Columns beyond the half plane mirror the columns of the opposite frequencies.
    mirrored = _negate_frequencies(full)
    full[..., half:] = mirrored[..., half:]
    assert full.shape[-2] == h
    return full


def _symmetrize(magnitude: torch.Tensor, width: int) -> torch.Tensor:
    """Make an rfft2-shaped magnitude consistent with a real image (|X(k)| = |X(-k)|) by averaging
    the entries that must be equal (column 0 and, for even widths, the Nyquist column)."""
    full = _half_to_full(magnitude, width)
    sym = 0.5 * (full + _negate_frequencies(full))
    return sym[..., : width // 2 + 1].contiguous()


def natural_magnitude(shape: Sequence[int], decay: float = 1.0, mean: float = 0.5, std: float = 0.2) -> torch.Tensor:
    """A 1/f^decay magnitude spectrum [C, H, W//2+1] for images of ``shape``.

    Scaled so that the image it makes has ``mean`` and ``std`` per channel (for ``norm="ortho"`` transforms). No data,
    no download.

    Args:
        shape: (C, H, W) or (B, C, H, W) of the images.
        decay: the exponent of the 1/f fall-off.
        mean: mean of the image per channel.
        std: standard deviation of the image per channel.

    Returns:
        The magnitudes, [C, H, W//2+1].

    >>> natural_magnitude((1, 8, 8)).shape
    torch.Size([1, 8, 5])
    """
    _, c, h, w = _full_shape(shape)
    fy = torch.fft.fftfreq(h).reshape(-1, 1)
    fx = torch.fft.fftfreq(w).reshape(1, -1)
    freq = (fx.pow(2) + fy.pow(2)).sqrt()
    full = 1.0 / freq.clamp(min=1.0 / max(h, w)).pow(decay)
    full[0, 0] = 0.0
    # Parseval with norm="ortho": sum over the plane of |X|^2 (without DC) = H * W * variance.
    energy = full.pow(2).sum()
    full = full * (std * math.sqrt(h * w) / energy.sqrt())
    full[0, 0] = mean * math.sqrt(h * w)
    return full[:, : w // 2 + 1].expand(c, h, w // 2 + 1).contiguous()


def _batches(data) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        yield data if data.dim() == 4 else data.unsqueeze(0)
        return
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x if x.dim() == 4 else x.unsqueeze(0)


def magnitude_from_data(data, size: Sequence[int] | int, max_batches: int | None = None) -> torch.Tensor:
    """The mean magnitude spectrum ``|rfft2(x, norm="ortho")|`` of real images, [C, H, W//2+1].

    Args:
        data: a tensor [N, C, H, W] (or [C, H, W]), or an iterable of such tensors or of
            ``(images, ...)`` batches (a DataLoader), images in [0, 1] (uint8 is scaled by 1/255).
        size: (H, W) of the images to visualize (an int for square ones); other sizes are resized
            bilinearly first.
        max_batches: read at most this many batches of an iterable.

    Returns:
        The mean magnitudes, [C, H, W//2+1] float32.

    Raises:
        ValueError: ``data`` holds no images.

    >>> x = torch.rand(4, 1, 8, 8)
    >>> m = magnitude_from_data(x, 8)
    >>> m.shape, bool(torch.allclose(m, torch.fft.rfft2(x, norm="ortho").abs().mean(0)))
    (torch.Size([1, 8, 5]), True)
    """
    size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    total: torch.Tensor | None = None
    count = 0
    for i, x in enumerate(_batches(data)):
        if max_batches is not None and i >= max_batches:
            break
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        mag = torch.fft.rfft2(x.double(), norm="ortho").abs().sum(0)
        total = mag if total is None else total + mag
        count += x.shape[0]
    if total is None or count == 0:
        raise ValueError("no images in data: cannot compute a magnitude spectrum")
    return (total / count).float()


class MacoParam(nn.Module):
    """Phase-only image parameterization: ``forward()`` returns images [B, C, H, W] in [0, 1]
    whose magnitude spectrum (before the output mapping) is ``magnitude``.

    Args:
        shape: (B, C, H, W) or (C, H, W).
        magnitude: [C, H, W//2+1] or [H, W//2+1] (all channels alike), the ``|rfft2|`` with
            ``norm="ortho"`` (:func:`magnitude_from_data`); default :func:`natural_magnitude`.
            Entries that a real image forces to be equal (column 0, the Nyquist column) are
            averaged, which changes nothing for magnitudes measured on real images.
        seed: seeds the initial phase (uniform in [-pi, pi)).
        output: ``"clamp"`` or ``"sigmoid"`` (see the module docstring).
        gain, target_mean: the sigmoid mapping's scale and mean (``output="sigmoid"`` only).
        track_alpha: accumulate ``|gradient|`` at the image during optimization for :func:`maco_alpha`.

    >>> p = MacoParam((2, 1, 8, 8), natural_magnitude((1, 8, 8)), seed=0)
    >>> img = p()
    >>> img.shape, bool(img.min() >= 0), bool(img.max() <= 1)
    (torch.Size([2, 1, 8, 8]), True, True)
    >>> spec = torch.fft.rfft2(p.spectral_image(), norm="ortho").abs()
    >>> bool(torch.allclose(spec, p.magnitude.expand_as(spec), atol=1e-5))
    True
    """

    magnitude: torch.Tensor
    image_mean: torch.Tensor
    image_std: torch.Tensor
    alpha_sum: torch.Tensor
    alpha_steps: torch.Tensor

    def __init__(
        self,
        shape: Sequence[int],
        magnitude: torch.Tensor | None = None,
        seed: int | Sequence[int] | None = 0,
        output: str = "clamp",
        gain: float = 2.0,
        target_mean: float = 0.5,
        track_alpha: bool = False,
    ):
        super().__init__()
        b, c, h, w = self.shape = _full_shape(shape)
        if output not in ("clamp", "sigmoid"):
            raise ValueError(f"output must be 'clamp' or 'sigmoid', got {output!r}")
        if magnitude is None:
            magnitude = natural_magnitude((c, h, w))
        magnitude = torch.as_tensor(magnitude, dtype=torch.float32).detach()
        if magnitude.dim() == 2:
            magnitude = magnitude.unsqueeze(0)
        expected = (h, w // 2 + 1)
        if magnitude.dim() != 3 or tuple(magnitude.shape[-2:]) != expected or magnitude.shape[0] not in (1, c):
            raise ValueError(
                f"magnitude must be [C, H, W//2+1] = [{c}, {h}, {w // 2 + 1}] (or without C) for images "
                f"{self.shape}, got {tuple(magnitude.shape)}; "
                f"compute it with magnitude_from_data(data, size=({h}, {w}))"
            )
        magnitude = _symmetrize(magnitude.abs().expand(c, *expected).contiguous(), w)
        self.output = output
        self.gain = float(gain)
        self.target_mean = float(target_mean)
        self.track_alpha = bool(track_alpha)
        self.register_buffer("magnitude", magnitude)
        # Constants of the spectral image (fixed by the magnitude, whatever the phase): per-channel
        # mean (DC / sqrt(HW)) and standard deviation (Parseval), for the sigmoid mapping.
        full = _half_to_full(magnitude, w)
        dc = full[:, 0, 0]
        var = (full.pow(2).sum((-2, -1)) - dc.pow(2)) / (h * w)
        self.register_buffer("image_mean", (dc / math.sqrt(h * w)).reshape(1, c, 1, 1))
        self.register_buffer("image_std", var.clamp(min=1e-12).sqrt().reshape(1, c, 1, 1))
        if seed is None or isinstance(seed, int):
            uniform = torch.rand((b, c, h, w), generator=_generator(seed))
        else:  # one seed per row: a row's phase does not depend on the other rows
            uniform = torch.stack([torch.rand((c, h, w), generator=_generator(s)) for s in seed])
        theta = (uniform * 2 - 1) * math.pi
        self.phase_params = nn.Parameter(theta)
        self.register_buffer("alpha_sum", torch.zeros(b, c, h, w))
        self.register_buffer("alpha_steps", torch.zeros((), dtype=torch.long))

    def phase(self) -> torch.Tensor:
        """The odd phase actually used (the antisymmetric part of the parameters).

        Returns:
            The phase, [B, C, H, W//2+1].
        """
        theta = self.phase_params
        odd = 0.5 * (theta - _negate_frequencies(theta))
        return odd[..., : self.shape[-1] // 2 + 1]

    def spectral_image(self) -> torch.Tensor:
        """``irfft2(magnitude * exp(i phase))``: the image before the mapping to [0, 1].

        Returns:
            The images, [B, C, H, W].
        """
        h, w = self.shape[-2:]
        spectrum = torch.polar(self.magnitude.expand(self.shape[0], -1, -1, -1), self.phase())
        return torch.fft.irfft2(spectrum, s=(h, w), norm="ortho")

    def forward(self) -> torch.Tensor:
        x = self.spectral_image()
        if self.output == "sigmoid":
            bias = math.log(self.target_mean / (1.0 - self.target_mean))
            img = torch.sigmoid(self.gain * (x - self.image_mean) / self.image_std + bias)
        else:
            img = x + (x.clamp(0.0, 1.0) - x).detach()
        if self.track_alpha and img.requires_grad:
            img.register_hook(self._accumulate)
        return img

    def _accumulate(self, grad: torch.Tensor) -> None:
        # render minimizes -objective, so the incoming gradient is -d objective / d image.
        self.alpha_sum.add_(grad.detach().abs())
        self.alpha_steps.add_(1)

    def reset_alpha(self) -> None:
        """Forget the accumulated gradients: :func:`maco_alpha` starts over."""
        self.alpha_sum.zero_()
        self.alpha_steps.zero_()


def maco_alpha(param: MacoParam, quantile: float = 0.99) -> torch.Tensor:
    """The transparency map of a MaCo rendering.

    ``|d objective / d image|`` accumulated over the optimization (``MacoParam(..., track_alpha=True)``), summed over
    channels and scaled to [0, 1] per image (values above the ``quantile`` of each image clip to 1).

    Gradients reach the image only through ``render``'s backward pass, so the map covers exactly
    the steps of the renders that used ``param`` (``param.reset_alpha()`` starts over).

    Args:
        param: the parameterization the renders used.
        quantile: the per-image quantile that maps to 1.

    Returns:
        The map, [B, 1, H, W] on the CPU.

    Raises:
        ValueError: no gradients were accumulated.
    """
    if int(param.alpha_steps) == 0:
        raise ValueError("no gradients accumulated: build MacoParam(..., track_alpha=True) and render with it first")
    a = param.alpha_sum.detach().sum(1, keepdim=True).cpu()
    top = torch.quantile(a.flatten(1), quantile, dim=1).clamp(min=1e-12).reshape(-1, 1, 1, 1)
    return (a / top).clamp(0.0, 1.0)


def apply_alpha(images: torch.Tensor, alpha: torch.Tensor, background: float = 1.0) -> torch.Tensor:
    """Blend ``images`` over a constant ``background`` with ``alpha``.

    Args:
        images: [B, C, H, W].
        alpha: [B, 1, H, W] in [0, 1] (1: the image, 0: the background).
        background: the background's value.

    Returns:
        ``alpha * images + (1 - alpha) * background``.
    """
    return alpha * images + (1.0 - alpha) * background
