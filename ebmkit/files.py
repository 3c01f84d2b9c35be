"""Files a run and a Hub repo are made of, below everything that reads them: safetensors weights
written atomically and checksummed, JSON written atomically, and a run's ``config.json``.

Loading never unpickles. The trainer's checkpoints (`ebmkit.training.checkpoint`), the model's
`from_run` and the Hub's `save_pretrained` all read and write through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ebmkit.digest import tensors_sha256

CHECKSUM = "sha256"  # safetensors metadata key: `tensors_sha256` of the file's tensors and other metadata


class CheckpointError(RuntimeError):
    """A checkpoint or weight file that is missing, truncated or corrupt."""


def run_config(run_dir: Path) -> dict:
    """The ``config.json`` that makes a folder an ebmkit run directory (recipe, provenance, shape)."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"'{run_dir}' is not an ebmkit run directory: config.json not found")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc})") from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (tmp + fsync + rename), with ``metadata`` and the
    checksum of both its tensors and that metadata, which `read_tensors` verifies."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = dict(metadata or {})
    save_file(tensors, str(tmp), metadata={**metadata, CHECKSUM: tensors_sha256(tensors, metadata)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata (less the checksum); a file whose content no
    longer matches the checksum it was written with (a flipped byte) is refused. Files without a
    checksum (written elsewhere, or before ebmkit recorded one) load as they are, unless their
    metadata is ebmkit's (``ebmkit.*`` keys), which never comes without one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"weights file '{path}' is corrupt or truncated ({exc})") from None
    checksum = metadata.pop(CHECKSUM, None)
    ours = checksum is not None or any(key.startswith("ebmkit.") for key in metadata)
    if ours and checksum != tensors_sha256(tensors, metadata):
        raise CheckpointError(f"weights file '{path}' is corrupt: its content does not match the checksum it was "
                              "written with")
    return tensors, metadata


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """`read_tensors` without the metadata."""
    return read_tensors(path)[0]


def write_json(obj, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def weights_kind(weights_file: str) -> str:
    """A run keeps EMA weights in model.safetensors (or best.safetensors), raw ones in checkpoint/."""
    return "raw" if Path(weights_file).parts[0].startswith("checkpoint") else "ema"
