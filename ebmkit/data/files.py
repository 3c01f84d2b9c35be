"""The user's own points: an N×D array in a ``.npy`` or ``.csv`` file.

The file is read and checked once, when the data set is built, so a bad file fails before
training starts with one message that names the file and what is wrong with it. The model
trains on the points standardised per axis (`ebmkit.data.transform`), whatever their units,
and a run records the file's absolute path and sha256, so that it resumes only on the same data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ebmkit.data.base import DataError, Dataset
from ebmkit.data.transform import Standardize
from ebmkit.digest import file_sha256
from ebmkit.registry import DATASETS, Options

SUFFIXES = (".npy", ".csv")
CSV_ENCODING = "utf-8-sig"  # UTF-8 that drops a leading byte-order mark (spreadsheets write one)
NPY_MAGIC = b"\x93NUMPY"
BOX_MARGIN = 0.1  # fraction of the data's span added on each side of the box


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_bad_line(path: Path, skip: int) -> str:
    """Where and why a csv is not a table of numbers, in the file's own line numbers."""
    width = None
    with path.open(encoding=CSV_ENCODING) as f:
        for number, line in enumerate(f, start=1):
            if number <= skip or not line.strip():
                continue
            fields = [v.strip() for v in line.split(",")]
            for v in fields:
                if not _is_number(v):
                    return f"line {number}: {v!r} is not a number"
            if width is not None and len(fields) != width:
                return f"line {number}: {len(fields)} values where earlier lines have {width}"
            width = len(fields)
    return "unreadable"


def _read_csv(path: Path, shown: str) -> np.ndarray:
    """Comma-separated numbers, one point per line; a first line with a non-number is a header."""
    try:
        with path.open(encoding=CSV_ENCODING) as f:
            first = f.readline()
    except UnicodeDecodeError:
        raise DataError(f"data file '{shown}' is not a text file") from None
    has_header = bool(first.strip()) and any(not _is_number(v.strip()) for v in first.split(","))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: reported by the caller as too few rows
            return np.loadtxt(path, delimiter=",", skiprows=int(has_header), ndmin=2, dtype=np.float64,
                              encoding=CSV_ENCODING)
    except ValueError:
        where = _first_bad_line(path, int(has_header))
        raise DataError(f"data file '{shown}' is not comma-separated numbers: {where}") from None


def _read_npy(path: Path, shown: str) -> np.ndarray:
    with path.open("rb") as f:
        if f.read(6) != NPY_MAGIC:
            raise DataError(f"data file '{shown}' is not a .npy file (write one with numpy.save)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which we never run
        raise DataError(f"data file '{shown}' is not a numeric .npy array: {exc}") from None


def load_points(path: str) -> np.ndarray:
    """Read and check an N×D array of finite numbers with N ≥ 2; raise ``DataError`` otherwise."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in SUFFIXES:
        hint = " (an .npz archive holds several arrays: save the one to train on with numpy.save)" \
            if p.suffix.lower() == ".npz" else ""
        raise DataError(f"data file '{path}' has unsupported suffix '{p.suffix}'; allowed: {', '.join(SUFFIXES)}{hint}")
    if not p.exists():
        raise DataError(f"data file '{path}' not found")
    if not p.is_file():
        raise DataError(f"data file '{path}' is not a regular file")
    arr = _read_npy(p, path) if p.suffix.lower() == ".npy" else _read_csv(p, path)
    if arr.ndim != 2 or arr.dtype.kind not in "iuf":
        raise DataError(
            f"data file '{path}' must hold a 2-D float array (N points × D dims), "
            f"found shape {arr.shape} and dtype {arr.dtype}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0]) + 1
        raise DataError(
            f"data file '{path}' has {int(bad.sum())} NaN/Inf values (first in data row {row}); "
            "remove or impute them"
        )
    if arr.shape[0] < 2:
        raise DataError(f"data file '{path}' has {arr.shape[0]} row(s); need at least 2 points")
    return arr


@DATASETS.register("file")
class FileDataset(Dataset):
    """Your own points: an N×D float array in a .npy or .csv file, resampled with replacement."""

    class Options(Options):
        path: str
        standardize: bool = Field(True, description="train on the points standardised per axis (mean 0, std 1); "
                                  "samples, energies, evaluation and pictures are mapped back to the data's units")

    def __init__(self, options: "FileDataset.Options"):
        self.config = options
        self.path = Path(options.path).expanduser().resolve()
        self.points: Tensor = torch.from_numpy(load_points(options.path)).to(torch.float32)
        self.dim = self.points.shape[1]
        # One interval for every axis (a square, as the toy sets use), the data's overall
        # range widened by 10% of its span on each side; a constant array gets ±1.
        lo, hi = float(self.points.min()), float(self.points.max())
        pad = BOX_MARGIN * (hi - lo) if hi > lo else 1.0
        self.box = (lo - pad, hi + pad)

    def _sample(self, n, g):
        return self.points[torch.randint(0, len(self.points), (n,), generator=g)]

    def standardization(self) -> Standardize | None:
        return Standardize.of(self.points) if self.config.standardize else None

    def local_paths(self) -> dict[str, str]:
        return {"path": str(self.path)}

    def fingerprint(self) -> str:
        return file_sha256(self.path)

    def __repr__(self) -> str:
        return f"FileDataset(path={self.config.path!r}, n={len(self.points)}, dim={self.dim})"
