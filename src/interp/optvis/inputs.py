"""The one contract for images given to the algorithms: float32 [B, C, H, W] in [0, 1].

Every function that takes images (``dream``, ``render``, ``invert``, ``mine_topk``...) passes them
through :func:`as_image_batch` (one image or a batch given by a user) or
:func:`check_image_range` (batches coming from a DataLoader), so the rules are the same
everywhere:

* float tensors and arrays must already be in [0, 1] (a tolerance of :data:`TOLERANCE` absorbs
  rounding; such values are clamped). Anything else is refused with an
  :class:`~interp.errors.ImageRangeError` that states the range seen and the likely fix,
  instead of being clamped silently;
* integer data is scaled by its bit depth: uint8 by 255, uint16 by 65535;
* PIL images are converted by :func:`pil_to_tensor`, which knows every PIL mode.

Pure torch (with numpy and PIL for those inputs): no Lightning, Hydra or TensorBoard.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from interp.errors import ImageRangeError, ImageReadError, InterpError

TOLERANCE = 1e-4
"""How far outside [0, 1] float values may be (rounding) before they are refused."""

# ITU-R 601-2 luma, the weights PIL uses for RGB -> L.
_LUMA = (0.299, 0.587, 0.114)
_CHANNEL_COUNTS = (1, 3, 4)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _range_error(name: str, lo: float, hi: float) -> ImageRangeError:
    """The error for float values in [lo, hi], with the fix that range suggests."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ImageRangeError(f"{name}: contains NaN or infinite values; images must be finite, in [0, 1]")
    seen = f"{name}: values in [{_fmt(lo)}, {_fmt(hi)}] are outside [0, 1]"
    if lo < -TOLERANCE:
        fix = (
            "undo the normalization (x * std + mean): models in this project carry their own, so images stay in [0, 1]"
        )
    elif hi <= 255.0 + TOLERANCE:
        fix = "divide by 255"
    elif hi <= 65535.0 + TOLERANCE:
        fix = "divide by 65535 (16-bit data)"
    else:
        fix = "rescale them to [0, 1]"
    return ImageRangeError(f"{seen}: {fix}")


def _nan_safe_extrema(t: torch.Tensor) -> tuple[float, float]:
    """(min, max) of a float tensor; NaN if any element is NaN."""
    if t.numel() == 0:
        return 0.0, 0.0
    if torch.isnan(t).any():
        return float("nan"), float("nan")
    lo, hi = torch.aminmax(t.detach())
    return float(lo), float(hi)


def check_image_range(x: torch.Tensor, name: str = "batch") -> torch.Tensor:
    """Check that a float batch (from a DataLoader, say) holds images in [0, 1]; return it unchanged.

    Meant for data that is already a float tensor: no copy, no conversion, one reduction. Values
    up to :data:`TOLERANCE` outside [0, 1] pass (they are rounding). Integer tensors are refused
    too: a DataLoader should yield floats in [0, 1].

    Args:
        x: the batch.
        name: names the batch in error messages.

    Returns:
        ``x`` itself.

    Raises:
        InterpError: ``x`` is not a tensor.
        ImageRangeError: integer dtype, NaN or infinite values, or values outside [0, 1]; the
            message names ``name``, the range seen and the fix.

    >>> check_image_range(torch.tensor([[[[0.0, 0.5, 1.0]]]])).shape
    torch.Size([1, 1, 1, 3])
    >>> check_image_range(torch.tensor([[[[-0.42, 2.8]]]]), "train batch")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    interp.errors.ImageRangeError: train batch: values in [-0.42, 2.8] are outside [0, 1]: undo the normalization...
    """
    if not isinstance(x, torch.Tensor):
        raise InterpError(f"{name}: expected a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = "x.float() / 255" if x.dtype == torch.uint8 else "float values in [0, 1]"
        raise ImageRangeError(f"{name}: images of dtype {x.dtype} where float in [0, 1] is expected: use {hint}")
    lo, hi = _nan_safe_extrema(x)
    if not (lo >= -TOLERANCE and hi <= 1.0 + TOLERANCE):
        raise _range_error(name, lo, hi)
    return x


def _checked_float(t: torch.Tensor, name: str) -> torch.Tensor:
    """A new float32 tensor from a float tensor in [0, 1] (tolerance values clamped)."""
    lo, hi = _nan_safe_extrema(t)
    if not (lo >= -TOLERANCE and hi <= 1.0 + TOLERANCE):
        raise _range_error(name, lo, hi)
    out = t.detach().to(torch.float32, copy=True)
    if lo < 0.0 or hi > 1.0:
        out.clamp_(0.0, 1.0)
    return out


def _scaled(t: torch.Tensor, name: str) -> torch.Tensor:
    """Any supported dtype to a new float32 tensor in [0, 1]."""
    if t.dtype == torch.uint8:
        return t.detach().to(torch.float32).div_(255.0)
    if t.dtype == torch.uint16:
        return t.detach().to(torch.float32).div_(65535.0)
    if t.dtype == torch.bool:
        return t.detach().to(torch.float32)
    if t.is_floating_point():
        return _checked_float(t, name)
    raise ImageRangeError(
        f"{name}: images of dtype {t.dtype} are ambiguous: give uint8 (0-255), uint16 (0-65535) or float in [0, 1]"
    )


def _check_shape(t: torch.Tensor, name: str, what: str) -> None:
    if any(s == 0 for s in t.shape):
        raise InterpError(f"{name}: empty image, shape {tuple(t.shape)}")
    channels, last = t.shape[-3], t.shape[-1]
    if last in _CHANNEL_COUNTS and channels not in _CHANNEL_COUNTS:
        perm = "x.permute(2, 0, 1)" if t.ndim == 3 else "x.permute(0, 3, 1, 2)"
        raise InterpError(f"{name}: shape {tuple(t.shape)} looks channels-last; {what} are channels-first: use {perm}")


def _from_numpy(a: np.ndarray, name: str) -> torch.Tensor:
    """An HW or HWC array to [1, C, H, W] float in [0, 1]."""
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim != 3:
        raise InterpError(
            f"{name}: a numpy image must be (H, W) or (H, W, C), got shape {a.shape}; "
            "for a batch give a tensor [B, C, H, W]"
        )
    if a.shape[-1] not in _CHANNEL_COUNTS:
        if a.shape[0] in _CHANNEL_COUNTS:
            raise InterpError(
                f"{name}: numpy shape {a.shape} looks like (C, H, W); numpy images are (H, W, C): "
                "use torch.from_numpy(a) to pass a channels-first image"
            )
        raise InterpError(f"{name}: numpy shape {a.shape}: expected (H, W, C) with C in 1, 3, 4")
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype == np.uint16:  # torch's uint16 support is partial: scale in numpy
        t = torch.from_numpy(a.astype(np.float32) / 65535.0)
    elif a.dtype.kind == "f":
        t = torch.from_numpy(a.astype(np.float64 if a.dtype == np.float64 else np.float32))
    else:
        t = torch.from_numpy(np.ascontiguousarray(a))
    t = _scaled(t, name).permute(2, 0, 1).unsqueeze(0).contiguous()
    if any(s == 0 for s in t.shape):
        raise InterpError(f"{name}: empty image, shape {a.shape}")
    return t


def _is_pil_image(x: Any) -> bool:
    # PIL is only imported by code that made a PIL image: no import needed to recognize one.
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def as_image_batch(x: Any, name: str = "image") -> torch.Tensor:
    """Return images as a new float32 tensor [B, C, H, W] in [0, 1] (the one image contract).

    Accepted:

    * float tensors in [0, 1], [C, H, W] (one image) or [B, C, H, W], on any device (kept);
    * uint8 tensors (divided by 255), uint16 (by 65535), bool (0 or 1);
    * numpy arrays (H, W) or (H, W, C): uint8 and uint16 scaled, float checked like tensors;
    * PIL images in any mode, converted by :func:`pil_to_tensor` (alpha over white).

    The result never shares memory with ``x``, so callers may modify it in place.

    Args:
        x: the image or images, in one of the forms above.
        name: names the image in error messages.

    Returns:
        A new float32 tensor [B, C, H, W] in [0, 1], on the device of a tensor ``x`` (else the CPU).

    Raises:
        ImageRangeError: float values outside [0, 1] (beyond :data:`TOLERANCE`), NaN, or an
            integer dtype other than uint8/uint16; the message gives the range seen and the fix.
        InterpError: a shape that is not an image (wrong rank, channels-last tensor, empty).

    >>> as_image_batch(torch.zeros(3, 2, 2)).shape
    torch.Size([1, 3, 2, 2])
    >>> as_image_batch(torch.tensor([[[0, 51, 255]]], dtype=torch.uint8))
    tensor([[[[0.0000, 0.2000, 1.0000]]]])
    >>> as_image_batch(np.full((2, 2, 3), 255, np.uint8)).shape
    torch.Size([1, 3, 2, 2])
    >>> as_image_batch(torch.tensor([[[0.0, 1.00005]]]))  # rounding is clamped
    tensor([[[[0., 1.]]]])
    >>> as_image_batch(torch.tensor([[[0.0, 128.0, 255.0]]]))
    Traceback (most recent call last):
    ...
    interp.errors.ImageRangeError: image: values in [0, 255] are outside [0, 1]: divide by 255
    """
    if isinstance(x, torch.Tensor):
        if x.ndim not in (3, 4):
            raise InterpError(
                f"{name}: expected a tensor [C, H, W] or [B, C, H, W], got shape {tuple(x.shape)}"
                + ("; for one grayscale image use x[None]" if x.ndim == 2 else "")
            )
        _check_shape(x, name, "tensors")
        out = _scaled(x, name)
        return out.unsqueeze(0) if out.ndim == 3 else out
    if isinstance(x, np.ndarray):
        return _from_numpy(x, name)
    if _is_pil_image(x):
        return pil_to_tensor(x, name=name).unsqueeze(0)
    raise InterpError(f"{name}: expected a tensor, a numpy array or a PIL image, got {type(x).__name__}")


# --- PIL images ---------------------------------------------------------------------------------

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _int_scale(image: Any) -> float:
    """The full-scale value of a 32-bit integer ("I") image: from the TIFF BitsPerSample tag when
    the file has one, else 16-bit (what PNG, PGM and older Pillow's 16-bit decoders give)."""
    bits, signed = 16, False
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        value = tags.get(258)  # BitsPerSample
        if value is not None:
            bits = int(value[0] if isinstance(value, tuple) else value)
        fmt = tags.get(339)  # SampleFormat: 1 unsigned, 2 signed
        signed = (fmt[0] if isinstance(fmt, tuple) else fmt) == 2
    return float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)


def _has_alpha(image: Any) -> bool:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    has = getattr(image, "has_transparency_data", None)  # Pillow >= 10.1
    if has is not None:
        return bool(has)
    return "transparency" in image.info


def _pil_float(image: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour H x W x C with C 1 or 3, alpha H x W or None), both float32 in [0, 1]."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)[..., None], None
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(image)
        return (a.astype(np.float32) / 65535.0)[..., None], None
    if mode == "I":
        a = np.asarray(image).astype(np.float64)
        scale = _int_scale(image)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > scale:
            raise ImageReadError(
                f"{name}: 32-bit integer image with values in [{lo:.0f}, {hi:.0f}], outside the "
                f"[0, {scale:.0f}] of its bit depth: save it as 8- or 16-bit"
            )
        return (a / scale).astype(np.float32)[..., None], None
    if mode == "F":
        a = np.asarray(image, dtype=np.float32)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (lo >= -TOLERANCE and hi <= 1.0 + TOLERANCE):
            err = _range_error(f"{name}: floating-point image", lo, hi)
            raise ImageRangeError(f"{err}, then save it again")
        return np.clip(a, 0.0, 1.0)[..., None], None
    if _has_alpha(image):
        gray = mode in ("L", "LA", "La") or (mode in ("P", "PA") and _gray_palette(image))
        image = image.convert("LA" if gray else "RGBA")
        a = np.asarray(image, dtype=np.float32) / 255.0
        return a[..., :-1], a[..., -1]
    if mode == "L":
        return (np.asarray(image, dtype=np.float32) / 255.0)[..., None], None
    if mode != "RGB":
        try:  # P, CMYK, YCbCr, HSV, RGBX... PIL knows how to reach RGB
            image = image.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageReadError(f"{name}: unsupported image mode {mode!r} ({e})") from None
    return np.asarray(image, dtype=np.float32) / 255.0, None


def _gray_palette(image: Any) -> bool:
    """Whether a palette image's colours are all grays (then it converts to one channel)."""
    palette = image.getpalette() or []
    rgb = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def pil_to_tensor(
    image: Any,
    mode: str | None = None,
    background: float = 1.0,
    name: str = "image",
) -> torch.Tensor:
    """Convert a PIL image of any mode to a float32 tensor [C, H, W] in [0, 1].

    How each PIL mode is read:

    * ``1`` (1-bit): 0 or 1. ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``...: 8-bit, divided by 255
      (palette, CMYK and YCbCr go through PIL's own conversion to RGB).
    * ``I;16``, ``I;16B``... (16-bit): divided by 65535, so a 16-bit white is 1.0.
    * ``I`` (32-bit integers): divided by the full scale of the file's bit depth (TIFF's
      BitsPerSample; 16-bit when the file does not say, as for PNG and PGM); values outside it
      (negative, say) are refused.
    * ``F`` (32-bit float): the values are taken as they are and must already be in [0, 1];
      other ranges are refused, never min-max rescaled, because a rescale would depend on the
      image's content and make two files of the same scene disagree.
    * Alpha (``RGBA``, ``LA``, ``PA``, a palette or grayscale image with a transparent colour) is
      composited over a flat ``background`` (1.0: white, what a viewer shows on a white page;
      0.0: black, for MNIST-like white-on-black images): ``colour * alpha + background * (1 - alpha)``.

    Args:
        image: a PIL image.
        mode: ``"RGB"`` (3 channels), ``"L"`` (1 channel, ITU-R 601-2 luma from colour) or
            ``None`` (1 channel for grayscale modes, 3 for colour ones).
        background: the gray level in [0, 1] that transparent pixels show.
        name: names the image in error messages (a path, say).

    Returns:
        The image, [C, H, W] float32 in [0, 1].

    Raises:
        ImageRangeError: an ``F`` image outside [0, 1].
        ImageReadError: an ``I`` image outside its bit depth, or a mode PIL cannot convert.
        ValueError: ``mode`` or ``background`` is not one of the values above.
    """
    if mode not in (None, "RGB", "L"):
        raise ValueError(f"mode must be 'RGB', 'L' or None, got {mode!r}")
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background must be in [0, 1], got {background}")
    colour, alpha = _pil_float(image, name)
    if alpha is not None:
        a = alpha[..., None]
        colour = colour * a + np.float32(background) * (1.0 - a)
    if mode == "RGB" and colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    elif mode == "L" and colour.shape[-1] == 3:
        colour = (colour @ np.asarray(_LUMA, dtype=np.float32))[..., None]
    out = torch.from_numpy(np.ascontiguousarray(colour, dtype=np.float32)).permute(2, 0, 1).contiguous()
    return out.clamp_(0.0, 1.0)
