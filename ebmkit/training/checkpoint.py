"""Checkpoints that never half-exist: safetensors + JSON, checksummed, swapped in atomically.

A checkpoint is a directory:

    model.safetensors      raw weights          ema.safetensors     EMA weights
    optimizer.safetensors  optimizer moments + RNG states
    state.json             step, recipe, optimizer hyper-parameters, loss-scaler states,
                           rollbacks, the best evaluation, and the sha256 of each file above
                           (written last; the LR schedule is a function of the step)

It is written to ``<name>.tmp`` and renamed into place; the previous one is kept as
``<name>.old`` until the new one is complete, so a crash at any instant leaves a whole
checkpoint behind. Loading never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ebmkit.digest import file_sha256, tensors_sha256

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


def _fsync_dir(path: Path) -> None:
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


def save_checkpoint(directory: Path, files: dict[str, dict[str, torch.Tensor]], state: dict) -> None:
    """``files`` maps a name ("model") to tensors, saved as ``name.safetensors``."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    checksums = {}
    for name, tensors in files.items():
        path = tmp / f"{name}.safetensors"
        save_tensors(tensors, path)
        checksums[path.name] = file_sha256(path)
    write_json({**state, "checksums": checksums}, tmp / "state.json")
    _fsync_dir(tmp)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    _fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(directory: Path) -> Path | None:
    """The complete checkpoint at ``directory``, or the previous one if a swap was interrupted."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_checkpoint(directory: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    found = find_checkpoint(directory)
    if found is None:
        raise CheckpointError(f"no checkpoint in '{directory}' (state.json not found)")
    try:
        state = json.loads((found / "state.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint '{found}/state.json' is corrupt ({exc})") from None
    files = {}
    for filename, digest in state.get("checksums", {}).items():
        path = found / filename
        if not path.is_file():
            raise CheckpointError(f"checkpoint file '{path}' is missing")
        if file_sha256(path) != digest:
            raise CheckpointError(f"checkpoint file '{path}' is corrupt or truncated (checksum mismatch)")
        files[path.stem] = load_tensors(path)
    return files, state


# -- optimizer state <-> flat tensors + JSON ---------------------------------------------
def optimizer_to_flat(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slot in sd["state"].items():
        for key, value in slot.items():
            if torch.is_tensor(value):
                tensors[f"{name}.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(name: str, optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    prefix = f"{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, slot = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[slot] = value
    for key, value in meta.get("scalars", {}).items():
        idx, slot = key.split(".", 1)
        state.setdefault(int(idx), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
