"""sha256 digests: of a file's bytes, and of a set of named tensors (what a weights file holds)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order, then the metadata's
    items in key order: equal for equal weights, whatever file format or order holds them."""
    h = hashlib.sha256()
    for key in sorted(metadata or {}):
        h.update(f"{key}={metadata[key]}|".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
