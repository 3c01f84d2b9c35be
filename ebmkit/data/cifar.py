"""CIFAR-10 from its python version: the ``cifar-10-batches-py`` folder of pickled batches.

Get it once: download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html
and untar it in ``~/.cache/ebmkit/cifar10`` (or set ``data.root``). Unpickling runs whatever
callables a file names, so the batches are read by an unpickler that looks up nothing but
numpy's array reconstructor: a tampered file is refused, not run.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import Field

from ebmkit.data.base import DataError
from ebmkit.data.images import ImageDataset, ImageOptions
from ebmkit.registry import DATASETS

CIFAR10_ROOT = "~/.cache/ebmkit/cifar10"
FOLDER = "cifar-10-batches-py"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
WHERE = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and untar it "
         f"in {CIFAR10_ROOT}, or set data.root to the folder that holds {FOLDER}")

NUMPY_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's array reconstructor, whichever module holds it
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): NUMPY_RECONSTRUCT,  # the name in the files (numpy 1)
    ("numpy._core.multiarray", "_reconstruct"): NUMPY_RECONSTRUCT,  # numpy 2's, in copies it re-pickled
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class BatchUnpickler(pickle.Unpickler):
    """Python 2's pickles of dicts of numpy arrays; every other global is refused."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # the files' py2 strings stay bytes (b"data")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(f"'{self.path}': refuses to unpickle {module}.{name}; a CIFAR-10 batch holds "
                            "only numpy arrays, lists and bytes (a tampered or foreign file?)")
        return ALLOWED_GLOBALS[module, name]


def read_batch(path: Path) -> np.ndarray:
    """One batch's images, uint8 (N, 3, 32, 32): each row of b"data" is the red, green and blue
    32×32 planes, row-major, one after the other."""
    try:
        with open(path, "rb") as f:
            batch = BatchUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as exc:  # a corrupt pickle fails in many ways (EOFError, UnpicklingError, ValueError ...)
        raise DataError(f"'{path}' is not a readable CIFAR-10 batch (corrupt or truncated?): "
                        f"{type(exc).__name__}: {exc}") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"an array of shape {data.shape} and dtype {data.dtype}" if isinstance(data, np.ndarray) else "none"
        raise DataError(f"'{path}' is not a CIFAR-10 batch: its b\"data\" should be uint8 N×3072, found {found}")
    return data.reshape(-1, 3, 32, 32)


class CIFAR10Options(ImageOptions):
    root: Optional[str] = Field(None, description=f"the {FOLDER} folder or its parent; null: {CIFAR10_ROOT}")
    hflip: bool = Field(True, description="random horizontal flip of every drawn image (the papers train with it)")


@DATASETS.register("cifar10")
class CIFAR10(ImageDataset):
    """CIFAR-10 (Krizhevsky 2009): 50k + 10k 32×32 colour images, from the python-pickle batches."""

    Options = CIFAR10Options

    def __init__(self, options: CIFAR10Options):
        self.config = options
        root = Path(options.root or CIFAR10_ROOT).expanduser()
        folder = root / FOLDER if (root / FOLDER).is_dir() else root
        names = BATCHES[options.split]
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            needs = "" if missing == names else f" (the {options.split} split needs {', '.join(names)})"
            raise DataError(f"CIFAR-10 not found: '{folder}' lacks {', '.join(missing)}{needs}; {WHERE}")
        parts, held = [], 0
        for name in names:  # with a limit, stop reading once it is reached
            if options.limit is not None and held >= options.limit:
                break
            parts.append(read_batch(folder / name))
            held += len(parts[-1])
        self._set_images(np.concatenate(parts), options.limit)
