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

from ebmkit.digest import file_sha256
from ebmkit.files import (  # noqa: F401  (where these were before ebmkit.files: kept importable from here)
    CheckpointError,
    fsync_dir,
    load_tensors,
    read_tensors,
    run_config,
    save_tensors,
    write_json,
)

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
    fsync_dir(tmp)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    fsync_dir(directory.parent)
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
