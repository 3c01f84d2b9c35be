"""stats.jsonl: one JSON row per log step, in the run directory (the default logger)."""

from __future__ import annotations

import json
from pathlib import Path

from ebmkit.loggers.base import Logger, RunStart
from ebmkit.registry import LOGGERS

FILE = "stats.jsonl"


def read_rows(path: Path) -> list[dict]:
    """The rows of a stats.jsonl."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@LOGGERS.register("jsonl")
class JsonlLogger(Logger):
    """stats.jsonl in the run directory: one JSON row per log step (the default)."""

    def start(self, run: RunStart) -> None:
        self.path = self.run_dir / FILE
        if run.resumed:
            self.rewind(run.step)
        self.file = open(self.path, "a")

    def log(self, row: dict[str, float], wall_time: float) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def rewind(self, step: int) -> None:
        """Rewrite the file without the rows after ``step`` (appends then go to its new end)."""
        if self.path.is_file():
            kept = [row for row in read_rows(self.path) if row["step"] <= step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))

    def close(self, status: str) -> None:
        self.file.close()
