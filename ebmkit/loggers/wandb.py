"""A Weights & Biases run: every row's scalars, the pictures, the recipe as its config.

W&B's own settings apply: its login (``wandb login``, ``WANDB_API_KEY``), and offline mode
(``WANDB_MODE=offline``: the run is written to ``RUN/wandb/offline-run-…`` for ``wandb sync``).
Its files go in ``RUN/wandb``.

W&B keeps every point it receives and takes a step only above the last one it committed, so
this logger does not rewind: it gets a step once a checkpoint covers it (`ebmkit.loggers.base`).
A step's row stays open until a later step arrives (the step's pictures and a rollback join
it), so it holds for certain only the steps before the open one, and a resume hands the open
row over again.
The run id is kept in the run's loggers.json, and ``--resume`` continues that run
(``resume="allow"``); offline, each process writes its own ``offline-run-…`` folder of the same
id, which ``wandb sync`` joins.

W&B writes its file every 15 s (``WANDB__TRANSACTION_LOG_FLUSH_INTERVAL``): a process killed
with SIGKILL loses the rows W&B had not written yet, and a resume does not know to resend them.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from ebmkit.loggers.base import Logger, RunStart
from ebmkit.registry import LOGGERS, Options

EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130}
ID_LETTERS = string.ascii_lowercase + string.digits  # a W&B run id: 8 of them, as W&B draws its own


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    """A Weights & Biases run (its own login, or WANDB_MODE=offline): scalars, pictures, the recipe as config."""

    requires = ("wandb", "torch-ebmkit[wandb]")
    rewinds = False

    class Options(Options):
        project: str = Field("ebmkit", min_length=1, description="the W&B project the run goes in")
        entity: Optional[str] = Field(None, description="the W&B team or user; null: the login's default")

    def start(self, run: RunStart) -> None:
        import wandb

        resumed = "id" in self.state
        run_id = self.state.setdefault("id", "".join(secrets.choice(ID_LETTERS) for _ in range(8)))
        self.open: int | None = None  # the step of the row W&B holds open
        self.run = wandb.init(project=self.config.project, entity=self.config.entity, id=run_id, resume="allow",
                              name=run.name, dir=str(self.run_dir), config=None if resumed else run.recipe,
                              settings=wandb.Settings(console="off"))  # ebmkit's own output is not captured

    def _send(self, data: dict, step: int) -> None:
        self.run.log(data, step=step, commit=False)  # W&B commits the open row when a later step comes
        self.open = step

    def holds(self, step: int) -> int:
        return step if self.open is None else min(step, self.open - 1)

    def log(self, row: dict[str, float], wall_time: float) -> None:
        self._send({**{key: value for key, value in row.items() if key != "step"}, "_timestamp": wall_time},
                   row["step"])

    def picture(self, name: str, path: Path, step: int) -> None:
        import wandb

        self._send({name: wandb.Image(str(path))}, step)

    def rollback(self, record: dict[str, Any]) -> None:
        step = record["restarted_from"]
        self._send({"rollbacks": record["rollback"]}, step)  # the checkpoint's row, still open
        self.run.summary[f"rollback.{record['rollback']}"] = (f"{record['problem']}; back to step {step} with seed "
                                                              f"{record['seed']}")

    def close(self, status: str) -> None:
        self.run.finish(exit_code=EXIT_CODES[status])  # commits the open row
        self.open = None
