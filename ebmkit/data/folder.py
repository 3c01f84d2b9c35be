"""The user's own pictures: every PNG or JPEG under a folder, made square at one size.

Each picture is decoded once, when the data set is built, optionally cut to a ``crop`` box,
resized so its short side is ``size`` and centre-cropped to size × size (torchvision's Resize +
CenterCrop, done with PIL), and kept in memory as uint8 like the other image sets. Paths are
sorted, so ``limit`` and every seeded draw pick the same pictures on every machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from PIL import Image
from pydantic import Field, NonNegativeInt

from ebmkit.data.base import DataError
from ebmkit.data.images import ImageDataset
from ebmkit.registry import DATASETS, Options

SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolderOptions(Options):
    root: str = Field(description="folder searched, with its subfolders, for .png, .jpg and .jpeg files")
    size: int = Field(32, ge=1, description="side of the square images: short side resized to it, centre cropped")
    channels: Literal[1, 3] = Field(3, description="1: grey (PIL mode L), 3: RGB")
    hflip: bool = Field(False, description="random horizontal flip of every drawn image")
    limit: Optional[int] = Field(None, ge=1, description="keep only the first N images, in sorted path order")
    crop: Optional[tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt, NonNegativeInt]] = Field(
        None, description="(left, top, right, bottom) box cut from every picture before resizing, "
                          "e.g. CelebA-64's (15, 40, 163, 188)")


def load_image(path: Path, size: int, mode: str, crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """One picture as uint8 (C, size, size): the ``crop`` box if given, bicubic resize of the
    short side to ``size``, then the centre size × size square."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"image '{path}' cannot be read: {exc}") from None
    if crop is not None:
        left, top, right, bottom = crop
        if not (left < right <= im.size[0] and top < bottom <= im.size[1]):
            raise DataError(f"image '{path}' is {im.size[0]}×{im.size[1]}; data.crop {tuple(crop)} is not a box "
                            "inside it (left < right ≤ width, top < bottom ≤ height)")
        im = im.crop(crop)
    scale = size / min(im.size)
    w, h = (max(size, round(side * scale)) for side in im.size)
    im = im.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    array = np.asarray(im.crop((left, top, left + size, top + size)))
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@DATASETS.register("image_folder")
class ImageFolder(ImageDataset):
    """Your own pictures: every .png/.jpg/.jpeg under a folder, resized and centre-cropped to size×size."""

    Options = ImageFolderOptions

    def __init__(self, options: ImageFolderOptions):
        self.config = options
        root = Path(options.root).expanduser()
        if not root.is_dir():
            raise DataError(f"image folder '{options.root}' {'is not a folder' if root.exists() else 'not found'}")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        if not paths:
            raise DataError(f"image folder '{options.root}' holds no images: looked for "
                            f"{', '.join(SUFFIXES)} (any case) in it and its subfolders")
        self.paths = paths[: options.limit]
        mode = "L" if options.channels == 1 else "RGB"
        images = np.empty((len(self.paths), options.channels, options.size, options.size), np.uint8)
        for i, path in enumerate(self.paths):
            images[i] = load_image(path, options.size, mode, options.crop)
        self._set_images(images, None)

    def __repr__(self) -> str:
        return f"ImageFolder(root={self.config.root!r}, n={len(self)}, shape={self.shape})"
