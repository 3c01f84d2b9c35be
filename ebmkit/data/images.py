"""Image data sets by name: Fashion-MNIST and MNIST from IDX files.

Every image set holds its pictures once, as uint8 (N, C, H, W) on the CPU, and draws batches
with replacement through the caller's generator (as the toy sets do), so a seed fixes every
batch across runs and resumes. Pixels come out in [−1, 1] (x/127.5 − 1), the range every paper
here trains in. Nothing is downloaded: a missing data set says where to put the files.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ebmkit.data.base import DataError, Dataset
from ebmkit.registry import DATASETS, Options

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"  # the Debian package dataset-fashion-mnist
IDX_DTYPES = {0x08: np.uint8}


class ImageOptions(Options):
    root: Optional[str] = Field(None, description="folder holding the files; null: the set's usual place")
    split: Literal["train", "test"] = "train"
    hflip: bool = Field(False, description="random horizontal flip of every drawn image")
    limit: Optional[int] = Field(None, ge=1, description="keep only the first N images")


class ImageDataset(Dataset):
    """uint8 images (N, C, H, W) held in memory, drawn with replacement, scaled to [−1, 1]."""

    box = (-1.0, 1.0)
    images: Tensor

    def _set_images(self, images: np.ndarray | Tensor, limit: int | None) -> None:
        images = torch.as_tensor(images)
        if limit is not None:
            images = images[:limit]
        self.images = images.contiguous()
        self._shape = tuple(self.images.shape[1:])
        self.dim = int(np.prod(self._shape))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def __len__(self) -> int:
        return len(self.images)

    def local_paths(self) -> dict[str, str]:
        root = self.config.root
        return {} if root is None else {"root": str(Path(root).expanduser().resolve())}

    def _sample(self, n, g):
        x = self.images[torch.randint(0, len(self.images), (n,), generator=g)].to(torch.float32) / 127.5 - 1.0
        if self.config.hflip:
            flip = torch.rand(n, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, shape={self.shape}, split={self.config.split!r})"


def to_uint8(x: Tensor) -> Tensor:
    """[−1, 1] floats → the uint8 pixels a PNG holds (the inverse of the sets' x/127.5 − 1)."""
    return ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def find_file(root: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` under root; the IDX files ship both ways."""
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, optionally gzipped): magic 0x0000{dtype}{ndim},
    ndim big-endian uint32 sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"'{path}' cannot be read as an IDX file: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"'{path}' is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"'{path}' is truncated: it ends inside its header ({len(raw)} bytes, "
                        f"the header of {ndim} sizes takes {4 + 4 * ndim})")
    sizes = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    body = np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if body.size != int(np.prod(sizes)):
        what = "is truncated" if body.size < int(np.prod(sizes)) else "has bytes past its data"
        raise DataError(f"'{path}' {what}: its header says {sizes} ({int(np.prod(sizes))} values), "
                        f"it holds {body.size}")
    return body.reshape(sizes).copy()  # writable: torch will own it


class IDXImages(ImageDataset):
    """28×28 grey images in IDX files: ``{train,t10k}-images-idx3-ubyte[.gz]``."""

    Options = ImageOptions
    title: str
    default_root: str | None
    where_hint: str

    def __init__(self, options: ImageOptions):
        self.config = options
        root = options.root or self.default_root
        stem = ("train" if options.split == "train" else "t10k") + "-images-idx3-ubyte"
        if root is None:
            raise DataError(f"{self.title}: set data.root to the folder holding {stem}[.gz] ({self.where_hint})")
        path = find_file(Path(root).expanduser(), stem)
        if path is None:
            raise DataError(f"{self.title} not found: no {stem}[.gz] in '{root}' ({self.where_hint})")
        images = read_idx(path)
        if images.ndim != 3:
            raise DataError(f"'{path}' holds an array of shape {images.shape}, not N×H×W images")
        self._set_images(images[:, None], options.limit)


@DATASETS.register("fashion_mnist")
class FashionMNIST(IDXImages):
    """Fashion-MNIST (Xiao et al. 2017): 60k + 10k 28×28 grey pictures of clothes."""

    title = "Fashion-MNIST"
    default_root = FASHION_MNIST_ROOT
    where_hint = "on Debian/Ubuntu: apt-get install dataset-fashion-mnist; or set data.root to a folder with the IDX files"


@DATASETS.register("mnist")
class MNIST(IDXImages):
    """MNIST handwritten digits: 60k + 10k 28×28 grey images, from the IDX files."""

    title = "MNIST"
    default_root = None
    where_hint = "the four IDX files from yann.lecun.com/exdb/mnist, gzipped or not"
