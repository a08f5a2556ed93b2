"""Loading photos as tensors in [0, 1], the VGGFace2 evaluation crop, and a folder of images.

Images live in one space throughout the project: float tensors (C, H, W) in [0, 1], RGB (or
grayscale). Models carry their own normalization, so nothing here subtracts means.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision.transforms.v2 import functional as TF

from interp.errors import DataError, DataNotFoundError, ImageReadError
from interp.optvis.inputs import pil_to_tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_ORIENTATION = 0x0112  # the EXIF tag that says how the camera was held

_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def default_face_image_path() -> Path:
    """The face photo shipped with the package (astronaut Eileen Collins, NASA, 256x256 PNG).

    Returns:
        Its path.
    """
    return _ASSETS / "astronaut.png"


def _bomb_error(path: Path, exc: Exception) -> ImageReadError:
    """PIL's decompression-bomb error or warning as one line naming the pixel count."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return ImageReadError(
        f"{path}: {pixels}, more than PIL.Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS:,}): refused as a "
        f"possible decompression bomb (raise that limit if you trust the file)"
    )


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file with PIL, reading its header only; every failure is one-line error.

    The caller must close the image (``with open_image(p) as img``). A picture with more pixels
    than ``PIL.Image.MAX_IMAGE_PIXELS`` is refused even where PIL would only warn.

    Args:
        path: the image file.

    Returns:
        The open (lazily decoded) PIL image.

    Raises:
        DataNotFoundError: no such file.
        ImageReadError: a folder, an unreadable file (permissions), not an image, or a
            decompression bomb; the message names the path.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file")
    if not path.exists():
        raise DataNotFoundError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb_error(path, e) from None
    except PermissionError as e:
        raise ImageReadError(f"{path} cannot be read: {e.strerror or 'permission denied'}") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path} is not an image file that can be read (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path} is not an image file that can be read ({_one_line(e)})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        # Reached when another thread changed the warning filters while we opened the file.
        img.close()
        raise _bomb_error(path, ValueError(f"({img.width * img.height} pixels)"))
    return img


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF ``Orientation`` tag says (a phone photo taken sideways comes out upright).

    Args:
        img: a PIL image.

    Returns:
        The turned image; ``img`` itself without the tag, or with EXIF data PIL cannot parse.
    """
    try:
        if img.getexif().get(_ORIENTATION, 1) in (None, 1):
            return img  # the common case: no copy
        turned = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block: the pixels are still good, show them as stored
        return img
    return img if turned is None else turned


def load_image(
    path: str | os.PathLike,
    size: int | Sequence[int] | None = None,
    mode: str = "RGB",
    background: float = 1.0,
) -> torch.Tensor:
    """Read an image file as a float tensor (C, H, W) in [0, 1].

    The image is turned upright as its EXIF ``Orientation`` tag says (phone photos), as image
    viewers show it. Every PIL mode is scaled by its real range (see
    :func:`interp.optvis.inputs.pil_to_tensor`): 8-bit by 255, 16-bit (``I;16``, 16-bit PNG and
    TIFF) by 65535, 1-bit to 0 or 1, 32-bit integers by the file's bit depth; floating-point
    images (``F``) must hold values in [0, 1]. Transparent pixels are composited over
    ``background`` (white by default).

    Args:
        path: the image file (anything PIL reads: PNG, JPEG, BMP, WebP, TIFF...).
        size: ``None`` keeps the size; an int resizes the shorter side to it, keeping the
            aspect ratio; ``(height, width)`` resizes to exactly that.
        mode: ``"RGB"`` (3 channels; grayscale repeated) or ``"L"`` (1 channel, luma).
        background: the gray level in [0, 1] that transparent pixels show (1.0 white, 0.0 black).

    Returns:
        The image, (C, H, W) float32 in [0, 1].

    Raises:
        DataNotFoundError (a FileNotFoundError): no such file.
        ImageReadError (a ValueError): a folder, an unreadable file, not an image, a truncated
            or corrupt image, a decompression bomb, or values a mode cannot hold; one line that
            names the path.
        ImageRangeError (a ValueError): a floating-point image with values outside [0, 1].
        ValueError: ``mode`` is neither ``"RGB"`` nor ``"L"``.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    path = Path(path).expanduser()
    with open_image(path) as img:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageReadError(f"{path} is not an image file that can be read ({_one_line(e)})") from None
        image = pil_to_tensor(upright(img), mode=mode, background=background, name=str(path))
    if size is not None:
        image = resize(image, size)
    return image


def resize(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Antialiased bilinear resize of an image in [0, 1].

    Args:
        image: (..., C, H, W).
        size: an int sets the shorter side (keeping the aspect ratio); ``(height, width)`` the exact size.

    Returns:
        The resized image, clamped to [0, 1].

    Raises:
        ValueError: a size that is neither an int nor a pair.
    """
    target = [int(size)] if isinstance(size, int) else [int(s) for s in size]
    if len(target) not in (1, 2):
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return TF.resize(image, target, antialias=True).clamp_(0.0, 1.0)


class FaceTransform:
    """Resize the shorter side to ``resize_to`` then take the centre ``crop`` x ``crop`` square.

    The VGGFace2 authors' evaluation protocol is 256 then a 224 centre crop. Works on tensors
    (..., C, H, W) in [0, 1].

    Args:
        resize_to: the shorter side after the resize.
        crop: the side of the centre crop.

    Raises:
        ValueError: ``crop > resize_to``.
    """

    def __init__(self, resize_to: int = 256, crop: int = 224):
        if crop > resize_to:
            raise ValueError(f"crop ({crop}) must not exceed resize_to ({resize_to})")
        self.resize_to = int(resize_to)
        self.crop = int(crop)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return TF.center_crop(resize(image, self.resize_to), [self.crop, self.crop])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(resize_to={self.resize_to}, crop={self.crop})"


def face_transform(resize_to: int = 256, crop: int = 224) -> FaceTransform:
    """The VGGFace2 test-time transform: shorter side to 256, centre crop 224.

    Args:
        resize_to: the shorter side after the resize.
        crop: the side of the centre crop.

    Returns:
        The transform.
    """
    return FaceTransform(resize_to, crop)


class ImageFolderDataset(Dataset):
    """The image files of a folder (and its subfolders), sorted by relative path.

    Items are ``(image, index)`` with the image a float tensor (C, H, W) in [0, 1] after
    ``transform``. Batching images of different sizes needs a transform that fixes the size
    (for example :func:`face_transform`). Extensions: jpg, jpeg, png, bmp, webp, tif, tiff
    (any case).

    Class labels: when every image lies in a subfolder (``folder/<class>/...``, the layout of
    torchvision's ``ImageFolder``; ``recursive`` only), :attr:`classes` holds the sorted subfolder
    names and :attr:`targets` the class number of each item; otherwise both are None and the data
    has no labels. The second element of an item stays its index either way: what reads labels
    (the top-k step, the atlas) reads :attr:`targets` (see :func:`label_reader`).

    Every file's header is opened once here: files that are not readable images (unreadable,
    not an image, a decompression bomb) are skipped with one warning that counts them, and are
    listed in :attr:`skipped`. A file whose header reads but whose pixels are truncated fails
    later, when its item is read, with an :class:`~interp.errors.ImageReadError` naming it.

    Args:
        folder: the folder of images.
        transform: applied to each image (C, H, W) in [0, 1] when it is read.
        recursive: also read the subfolders (and take them as classes when every image lies in one).
        mode: ``"RGB"`` or ``"L"``, as for :func:`load_image`.

    Raises:
        ValueError: an unknown ``mode``.
        DataNotFoundError (a FileNotFoundError): the folder does not exist.
        DataError (a ValueError): the path is a file, or the folder holds no image files.
        ImageReadError (a ValueError): none of the image files can be read.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        recursive: bool = True,
        mode: str = "RGB",
    ):
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
        self.folder = Path(folder).expanduser()
        if not self.folder.exists():
            raise DataNotFoundError(f"image folder not found: {self.folder}")
        if not self.folder.is_dir():
            raise DataError(f"{self.folder} is a file, not a folder of images")
        try:
            files = list(self.folder.rglob("*") if recursive else self.folder.iterdir())
        except OSError as e:
            raise DataError(f"image folder {self.folder} cannot be listed: {e.strerror or e}") from None
        candidates = sorted(
            (p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
            key=lambda p: p.relative_to(self.folder).as_posix(),
        )
        if not candidates:
            raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        self.paths: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        for path in candidates:
            try:
                with open_image(path):
                    pass
            except (ImageReadError, DataNotFoundError) as e:
                self.skipped.append((path, str(e)))
            else:
                self.paths.append(path)
        if self.skipped:
            first, reason = self.skipped[0]
            if not self.paths:
                raise ImageReadError(
                    f"none of the {len(candidates)} image files in {self.folder} can be read (first: {reason})"
                )
            warnings.warn(
                f"skipped {len(self.skipped)} of {len(candidates)} image files in {self.folder} that cannot be "
                f"read (first: {reason})",
                stacklevel=2,
            )
        self.classes: list[str] | None = None
        self.targets: list[int] | None = None
        parts = [p.relative_to(self.folder).parts for p in self.paths]
        if recursive and all(len(rel) > 1 for rel in parts):
            self.classes = sorted({rel[0] for rel in parts})
            number = {name: i for i, name in enumerate(self.classes)}
            self.targets = [number[rel[0]] for rel in parts]
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.paths[index], mode=self.mode)
        if self.transform is not None:
            image = self.transform(image)
        return image, index


def label_reader(dataset: Any) -> Callable[[int], int | None] | None:
    """How to read the class label of item ``i`` of ``dataset``, when the data set declares its labels itself.

    A data set declares its labels with a ``targets`` attribute (torchvision's convention): a
    sequence of class numbers, one per item, or None for a data set without labels, such as an
    :class:`ImageFolderDataset` of a folder without class subfolders (whose items' second element
    is an index, not a label). ``torch.utils.data.Subset`` is looked through.

    Args:
        dataset: the data set.

    Returns:
        ``read(i) -> label or None``; ``None`` when the data set has no ``targets`` (the second element of an item is
        then its label).
    """
    if isinstance(dataset, Subset):
        inner = label_reader(dataset.dataset)
        if inner is None:
            return None
        indices = dataset.indices
        return lambda i: inner(int(indices[i]))
    if not hasattr(dataset, "targets"):
        return None
    targets = dataset.targets
    if targets is None:
        return lambda i: None

    def read(i: int) -> int | None:
        try:
            return int(targets[i])
        except (TypeError, ValueError, IndexError):  # not one class number per item
            return None

    return read


def class_names(dataset: Any) -> list[str] | None:
    """The names of the classes of ``dataset`` (its ``classes``; through a ``Subset``), if it has them.

    Args:
        dataset: the data set.

    Returns:
        The names as strings, or ``None``.
    """
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    names = getattr(dataset, "classes", None)
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None
