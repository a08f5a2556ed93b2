"""Loading photos as tensors in [0, 1], the VGGFace2 evaluation crop, and a folder of images.

Images live in one space throughout the project: float tensors (C, H, W) in [0, 1], RGB (or
grayscale). Models carry their own normalization, so nothing here subtracts means.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def default_face_image_path() -> Path:
    """The face photo shipped with the package (astronaut Eileen Collins, NASA, 256x256 PNG)."""
    return _ASSETS / "astronaut.png"


def load_image(
    path: str | os.PathLike,
    size: int | Sequence[int] | None = None,
    mode: str = "RGB",
) -> torch.Tensor:
    """Read an image file as a float tensor (C, H, W) in [0, 1].

    Args:
        path: the image file (anything PIL reads: PNG, JPEG, BMP, WebP...).
        size: ``None`` keeps the size; an int resizes the shorter side to it, keeping the
            aspect ratio; ``(height, width)`` resizes to exactly that.
        mode: ``"RGB"`` (3 channels; alpha is dropped, grayscale repeated) or ``"L"`` (1 channel).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image PIL can read (the message names the path).
    """
    path = Path(path).expanduser()
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path} is not an image file that can be read ({e})") from None
    image = TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)
    if size is not None:
        image = resize(image, size)
    return image


def resize(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Antialiased bilinear resize of a (..., C, H, W) image in [0, 1]; an int sets the shorter side."""
    target = [int(size)] if isinstance(size, int) else [int(s) for s in size]
    if len(target) not in (1, 2):
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return TF.resize(image, target, antialias=True).clamp_(0.0, 1.0)


class FaceTransform:
    """Resize the shorter side to ``resize_to`` then take the centre ``crop`` x ``crop`` square.

    The VGGFace2 authors' evaluation protocol is 256 then a 224 centre crop. Works on tensors
    (..., C, H, W) in [0, 1].
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
    """The VGGFace2 test-time transform: shorter side to 256, centre crop 224."""
    return FaceTransform(resize_to, crop)


class ImageFolderDataset(Dataset):
    """The image files of a folder (and its subfolders), sorted by relative path.

    Items are ``(image, index)`` with the image a float tensor (C, H, W) in [0, 1] after
    ``transform``. Batching images of different sizes needs a transform that fixes the size
    (for example :func:`face_transform`). Extensions: jpg, jpeg, png, bmp, webp (any case).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        recursive: bool = True,
        mode: str = "RGB",
    ):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.folder}")
        files = self.folder.rglob("*") if recursive else self.folder.iterdir()
        self.paths = sorted(
            (p for p in files if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.relative_to(self.folder).as_posix(),
        )
        if not self.paths:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {self.folder}")
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.paths[index], mode=self.mode)
        if self.transform is not None:
            image = self.transform(image)
        return image, index
