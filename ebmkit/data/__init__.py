"""Data sets named by string: the 2D toy sets of the papers, image sets, and the user's own points."""

from __future__ import annotations

import os
from pathlib import Path

from ebmkit.data import cifar, files, folder, images, toy  # noqa: F401  (registers the built-ins)
from ebmkit.data.base import DataError, Dataset
from ebmkit.data.files import FileDataset
from ebmkit.registry import DATASETS


def data_spec_from_cli(value: str) -> dict | str:
    """``--data`` → a data spec: a registered name stays a name; something that looks like a
    file (a suffix such as ``.npy``, ``.csv`` or ``.npz``, a path separator, or an existing
    file) becomes the ``file`` data set, which names the formats it reads; anything else passes
    through, so the registry's unknown-name error lists what is available."""
    if value in DATASETS.names():
        return value
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if Path(value).suffix or any(s in value for s in separators) or Path(value).is_file():
        return {"name": "file", "path": value}
    return value


__all__ = ["DATASETS", "DataError", "Dataset", "FileDataset", "data_spec_from_cli"]
