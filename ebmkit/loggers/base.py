"""The logger kind: where a run's reports go (``train.loggers``).

The trainer hands each logger what it already writes, at the places it writes it: one row per
log step (``step``, the losses and metrics of the step's updates, the learning rates, ``time``
and ``samples_per_s``, and ``train.eval_metric`` at evaluation steps), the pictures it saves
(``density``, ``samples``), and each rollback. Rank 0 alone builds loggers
(`ebmkit.training.reports`).

A run goes back in steps in two ways: ``--resume`` continues from the last checkpoint, and a
rollback (``train.on_divergence=rollback``) returns to it. The steps logged since that
checkpoint are abandoned and done again. A logger that can drop what it received
(``rewinds = True``: stats.jsonl is rewritten, TensorBoard's readers purge the steps after a
restart event) gets each row as it is logged, and ``rewind(step)`` when a run goes back. One
that keeps every point it receives (``rewinds = False``: MLflow, W&B) gets a step only once a
checkpoint covers it, so it never receives a step twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ebmkit.registry import LOGGERS


@dataclass(frozen=True)
class RunStart:
    """What a logger is told when training starts or resumes.

    name: the run directory's name; recipe: the resolved recipe, as config.json holds it;
    step: the step training starts from (the checkpoint's, on resume); resumed: whether the run
    resumes, so that a rewinding logger drops what it holds after ``step``."""

    name: str
    recipe: dict
    step: int
    resumed: bool


class Logger:
    """A place a run's reports go: rows of scalars, pictures and rollbacks.

    ``state`` is this logger's entry in the run's ``loggers.json``, saved by the trainer: what it
    needs to continue the same run on resume (MLflow's run id, W&B's)."""

    Options = None
    requires: tuple[str, str] | None = None  # (the module it imports, the pip requirement that installs it)
    rewinds = True  # it can drop the steps after a given one (see the module docstring)

    def __init__(self, options=None, *, run_dir: Path, state: dict):
        self.config, self.run_dir, self.state = options, Path(run_dir), state

    @classmethod
    def missing(cls, name: str) -> str | None:
        """Why this logger cannot run here (its package is not installed), in one line; None if it can."""
        if cls.requires is None or find_spec(cls.requires[0]) is not None:
            return None
        module, requirement = cls.requires
        return (f"logger '{name}' needs the package '{module}', which is not installed: "
                f"pip install \"{requirement}\" (or drop it from train.loggers)")

    def start(self, run: RunStart) -> None:
        """Open (or, when ``run.resumed``, reopen) the run."""

    def log(self, row: dict[str, float], wall_time: float) -> None:
        """One row: ``row["step"]`` and scalars; ``wall_time``: when the trainer logged it (Unix time)."""
        raise NotImplementedError

    def picture(self, name: str, path: Path, step: int) -> None:
        """A PNG the run saved at ``step`` (``density``: 2D data; ``samples``: an image grid)."""

    def holds(self, step: int) -> int:
        """Handed every row up to ``step``, the last step it holds for certain (a logger that does
        not rewind; on resume the trainer hands it the rows after that one again). W&B holds one
        row less: it writes a row once a later step comes."""
        return step

    def rewind(self, step: int) -> None:
        """Drop every step after ``step`` (a rewinding logger, when the run goes back to it)."""

    def rollback(self, record: dict[str, Any]) -> None:
        """A rollback: ``record`` is rollbacks.jsonl's line (``diverged_at``, ``problem``,
        ``restarted_from``, ``seed``) and its number, ``rollback`` (1, 2, …)."""

    def close(self, status: str) -> None:
        """The run ended: ``finished``, ``failed`` or ``interrupted`` (it may be resumed)."""


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested recipe as dotted keys (``train.lr``, ``sampler.refine.n_steps``); a list is one
    value, written as JSON (a spec with no options as its bare name: ``[jsonl, tensorboard]``)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "[" + ", ".join(item["name"] if isinstance(item, dict) and list(item) == ["name"]
                                         else json.dumps(item) for item in value) + "]"
        else:
            flat[name] = value
    return flat


def recipe_yaml(recipe: dict) -> str:
    """The resolved recipe as YAML, the form `ebmkit show` prints."""
    import yaml

    return yaml.safe_dump(recipe, sort_keys=False, width=1000)


def missing_package(specs: list) -> str | None:
    """The first logger of ``specs`` (``train.loggers``) whose package is not installed, in one line."""
    for spec in specs:
        name = spec["name"] if isinstance(spec, dict) else spec
        if problem := LOGGERS.get(name).obj.missing(name):
            return problem
    return None
