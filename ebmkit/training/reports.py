"""What the trainer hands its loggers (`ebmkit.loggers`), and when.

Rank 0 alone builds the loggers of ``train.loggers``; on the other ranks every call here does
nothing. Each row, picture and rollback goes to every logger. A logger that rewinds gets it at
once, and ``rewind(step)`` when a rollback goes back (on resume, its ``start`` does the same).
One that does not (MLflow, W&B) gets a step once a checkpoint covers it, since a resume or a
rollback repeats the steps after the last checkpoint, and everything left when the run finishes.

``loggers.json`` in the run directory keeps each logger's state (what it needs to continue the
same run: MLflow's run id, W&B's) and, for one that does not rewind, ``upto``: the last step it
holds for certain (`Logger.holds`). On resume, the rows of stats.jsonl after it and up to the
checkpoint are handed over again: those of a run killed between writing a checkpoint and
handing them over, or W&B's last row, which it writes only once a later step comes. A logger
added on resume starts at the step the run resumes from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ebmkit.files import write_json
from ebmkit.loggers.base import Logger, RunStart
from ebmkit.registry import LOGGERS
from ebmkit.training.errors import TrainingError

STATE = "loggers.json"


class Reports:
    """The loggers of one run, on rank 0 (``enabled``); a no-op elsewhere."""

    def __init__(self, recipe, run_dir: Path, enabled: bool):
        self.recipe, self.run_dir, self.enabled = recipe, Path(run_dir), enabled
        self.loggers: dict[str, Logger] = {}
        self.state: dict[str, dict] = {}
        self.pending: list[tuple[int, str, tuple]] = []  # (step, method, arguments) not yet given to the loggers
        self.handed = 0  # every step up to this one went to the loggers that do not rewind
        self.closed = False

    @property
    def _waiting(self) -> list[tuple[str, Logger]]:
        return [(name, logger) for name, logger in self.loggers.items() if not logger.rewinds]

    def start(self, step: int, resumed: bool, history: list[dict]) -> None:
        """Open every logger at ``step``; ``history``: stats.jsonl's rows up to it (resume)."""
        if not self.enabled:
            return
        path = self.run_dir / STATE
        self.state = json.loads(path.read_text()) if resumed and path.is_file() else {}
        recipe = self.recipe.model_dump(mode="json")
        for spec in self.recipe.train.loggers:
            name = spec["name"]
            state = self.state.setdefault(name, {})
            logger = LOGGERS.build(spec, run_dir=self.run_dir, state=state)
            try:
                logger.start(RunStart(self.run_dir.name, recipe, step, resumed))
            except Exception as exc:  # a login, a store or a server that is not there
                raise TrainingError(f"logger '{name}' could not start: {type(exc).__name__}: {exc}") from None
            self.loggers[name] = logger
            if not logger.rewinds:
                for row in history:  # rows a killed run logged up to its checkpoint that the logger lacks
                    if state.get("upto", step) < row["step"] <= step:
                        logger.log(row, time.time())
        self.handed = step
        self._save_state()

    def log(self, row: dict[str, float]) -> None:
        self._report(row["step"], "log", (row, time.time()))

    def picture(self, name: str, path: Path, step: int) -> None:
        self._report(step, "picture", (name, Path(path), step))

    def _report(self, step: int, method: str, arguments: tuple) -> None:
        for logger in self.loggers.values():
            if logger.rewinds:
                getattr(logger, method)(*arguments)
        if self._waiting:
            self.pending.append((step, method, arguments))

    def saved(self, step: int) -> None:
        """A checkpoint of ``step`` is on disk: what comes up to it is final."""
        self._deliver(step)

    def rollback(self, record: dict[str, Any]) -> None:
        """The run went back to ``record["restarted_from"]`` (`ebmkit.training.rollback`)."""
        step = record["restarted_from"]
        self.pending = [p for p in self.pending if p[0] <= step]
        for logger in self.loggers.values():
            if logger.rewinds:
                logger.rewind(step)
        self._report(step, "rollback", (record,))

    def _deliver(self, upto: int | None) -> None:
        """Hand the pending reports up to step ``upto`` (all: None) to the loggers that do not rewind."""
        if not self._waiting:
            return
        due = [p for p in self.pending if upto is None or p[0] <= upto]
        self.pending = self.pending[len(due):]  # in step order: rows, then their step's pictures
        for _, logger in self._waiting:
            for _, method, arguments in due:
                getattr(logger, method)(*arguments)
        self.handed = max([self.handed, *(p[0] for p in due), *([] if upto is None else [upto])])
        self._save_state()

    def close(self, status: str) -> None:
        """``finished`` (everything pending is final), ``failed`` or ``interrupted`` (what is pending
        may be repeated by a resume, so it is dropped). Once. Every logger is closed; one that fails
        to close is reported when the run finished, and not in place of the error that ended it."""
        if self.closed or not self.loggers:
            return
        self.closed = True
        if status == "finished":
            self._deliver(None)
        failed = []
        for name, logger in self.loggers.items():
            try:
                logger.close(status)
            except Exception as exc:
                failed.append(f"logger '{name}' could not close: {type(exc).__name__}: {exc}")
        self._save_state()
        if failed and status == "finished":
            raise TrainingError("; ".join(failed))

    def _save_state(self) -> None:
        for name, logger in self._waiting:
            self.state[name]["upto"] = logger.holds(self.handed)
        if any(self.state.values()):  # stats.jsonl alone keeps nothing here
            write_json(self.state, self.run_dir / STATE)
