"""Run directories read back: what `ebmkit runs` tabulates and `ebmkit runs --compare` compares.

A run is a folder holding the ``config.json`` that ``ebmkit train`` writes; its rows are its
stats.jsonl (the ``jsonl`` logger), its steps the checkpoint's. Nothing here builds a model, so
a run whose components are not installed is still listed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ebmkit.loggers.base import flatten
from ebmkit.loggers.jsonl import FILE as STATS, read_rows
from ebmkit.training.rundir import is_run

NOT_METRICS = ("step",)


class RunsError(ValueError):
    """A path given to `ebmkit runs` that is neither a run nor a folder of runs."""


@dataclass
class Run:
    path: Path
    recipe: dict
    rows: list[dict]  # stats.jsonl; empty when the run logged none (no jsonl logger)
    step: int | None  # the checkpoint's step; None before the first

    @property
    def data(self) -> str:
        data = self.recipe.get("data", {})
        return Path(data["path"]).stem if data.get("name") == "file" and data.get("path") else data.get("name", "?")

    @property
    def metrics(self) -> list[str]:
        """The numeric columns of its rows, in the order they first appear."""
        names: dict[str, None] = {}
        for row in self.rows:
            for key, value in row.items():
                if key not in NOT_METRICS and isinstance(value, (int, float)):
                    names.setdefault(key)
        return list(names)

    def last(self, key: str) -> tuple[int, float] | None:
        """(step, value) of the last row that has ``key``."""
        for row in reversed(self.rows):
            if key in row:
                return row["step"], row[key]
        return None


def find(paths: list[Path]) -> list[Path]:
    """Each path that is a run, and the runs directly inside each one that is not, in name order."""
    found = []
    for path in map(Path, paths):
        if is_run(path):
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_dir() and is_run(p))
        else:
            raise RunsError(f"'{path}' is neither a run directory (config.json written by ebmkit train) nor a folder")
    return found


def load(path: Path) -> Run:
    path = Path(path)
    recipe = json.loads((path / "config.json").read_text())["recipe"]
    rows = read_rows(path / STATS) if (path / STATS).is_file() else []
    try:
        step = json.loads((path / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        step = None
    return Run(path, recipe, rows, step)


def differences(runs: list[Run]) -> list[tuple[str, list]]:
    """The recipe options whose values differ between the runs: (dotted key, one value per run;
    None where a run's recipe lacks the key)."""
    flat = [flatten(run.recipe) for run in runs]
    keys = list(dict.fromkeys(key for one in flat for key in one))
    rows = [(key, [one.get(key) for one in flat]) for key in keys]
    return [(key, values) for key, values in rows if any(v != values[0] for v in values[1:])]


def compare_figure(runs: list[Run], path: Path, labels: list[str] | None = None) -> list[str]:
    """Every metric some run logged, one panel each, the runs' curves side by side against the
    step; written as one PNG. Returns the metrics drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or [run.path.name for run in runs]
    metrics = list(dict.fromkeys(m for run in runs for m in run.metrics))
    if not metrics:
        raise RunsError("none of these runs logged any rows (stats.jsonl: the jsonl logger), so there are no curves "
                        "to compare")
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for run, label in zip(runs, labels):
            points = [(row["step"], row[metric]) for row in run.rows if metric in row]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=label, marker="." if len(points) < 30 else None)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("step", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return metrics
