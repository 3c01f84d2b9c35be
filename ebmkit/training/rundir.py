"""A run's directory: numbered without races, one writer at a time, cleared only of the run's files.

* Automatic names ``runs/NNN-recipe-data`` are taken with ``mkdir``, which fails when another
  process took the number first; the next number is tried.
* A writer holds an exclusive ``flock`` on ``DIR/.lock`` (which records its pid). The kernel
  drops the lock when the process ends, however it ends, so a lock left by a killed run is
  simply free again; a second live writer is refused in one line.
* ``--overwrite`` restarts only an ebmkit run (a folder with its ``config.json``), and deletes
  only the files a run writes, by name.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from pathlib import Path

LOCK = ".lock"
# What a run writes at its top level and `--overwrite` deletes (config.json is rewritten instead,
# so the folder stays a run; eval.json: `ebmkit eval`'s scores of the weights being replaced;
# cell.json: `ebmkit bench toy`'s record of them; loggers.json, tensorboard/ and wandb/: the loggers',
# `ebmkit.training.reports`).
RUN_FILES = ("stats.jsonl", "rollbacks.jsonl", "model.safetensors", "best.safetensors",
             "density.png", "samples.png", "eval.json", "cell.json", "loggers.json")
RUN_FOLDERS = ("checkpoint", "checkpoint.old", "checkpoint.tmp", "tensorboard", "wandb")
GRIDS = re.compile(r"step_\d{6}\.png")  # samples/ of an image run: one grid per evaluation


class RunDirectoryError(RuntimeError):
    """A run directory that cannot be used: taken by another writer, not a run, not writable."""


def is_run(path: Path) -> bool:
    """Whether ``path`` holds a run's config.json (written by the trainer before step 1)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("recipe"), dict)


def has_content(path: Path) -> bool:
    """Whether ``path`` holds anything besides a lock file."""
    return path.is_dir() and any(p.name != LOCK for p in path.iterdir())


def check_writable(path: Path) -> None:
    """Say in one line, before any work, why ``path`` cannot become a run directory: its nearest
    existing folder must take a new file (nothing is created here)."""
    import tempfile

    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"'{existing}' is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ebmkit-write-test"):
            pass
    except OSError as exc:
        raise RunDirectoryError(f"cannot write the run directory '{path}': {exc.strerror or exc}") from None


def make_dir(path: Path) -> list[Path]:
    """Create ``path`` and any missing parents; the folders created, deepest first."""
    created, missing = [], Path(path)
    while not missing.exists():
        created.append(missing)
        missing = missing.parent
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot write the run directory '{path}': {exc.strerror or exc}") from None
    return created


def remove_if_unused(folders: list[Path]) -> None:
    """Remove the folders (deepest first) a run created, when nothing but its lock was written in
    them: the run failed before its first file (a bad data file, an unusable option)."""
    for folder in folders:
        if not folder.is_dir() or has_content(folder):
            return
        (folder / LOCK).unlink(missing_ok=True)
        folder.rmdir()


def numbered(root: Path, name: str) -> tuple[Path, list[Path]]:
    """Create ``root/NNN-name`` with NNN one above the highest taken, race-free; returns it and
    the folders created for it, deepest first."""
    check_writable(root)
    created = make_dir(root)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"(\d+)-", p.name))]
    number = max(taken, default=-1) + 1
    while True:
        path = root / f"{number:03d}-{name}"
        try:
            path.mkdir()
            return path, [path, *created]
        except FileExistsError:  # another run took it between our listing and now
            number += 1


class Lock:
    """An exclusive lock on a run directory for as long as this process trains in it."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK
        self._fd: int | None = None

    def acquire(self) -> "Lock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryError(f"run directory '{self.path.parent}' is in use by another ebmkit process (pid "
                                    f"{holder}); wait for it to finish, or train into another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def clear(path: Path) -> None:
    """Remove what a run writes from ``path`` (an ebmkit run), and nothing else: other files in
    it, and anything in ``samples/`` but the run's own grids, stay."""
    for name in RUN_FOLDERS:
        shutil.rmtree(path / name, ignore_errors=True)
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    samples = path / "samples"
    if samples.is_dir():
        for grid in samples.iterdir():
            if GRIDS.fullmatch(grid.name) and grid.is_file():
                grid.unlink()
        if not any(samples.iterdir()):
            samples.rmdir()
