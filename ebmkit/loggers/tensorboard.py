"""TensorBoard event files in ``RUN/tensorboard``, written with torch.utils.tensorboard.

A new run writes the resolved recipe as text and its options as hyperparameters (the HPARAMS
tab) at step 0; then every row's scalars under their stats.jsonl names, and the run's pictures.
Events are flushed at each row, so a killed run loses none it logged.

Going back: a resumed run, or one rolled back to step S, opens a new event file whose first
event is a restart (``SummaryWriter(purge_step=S + 1)``, TensorBoard's ``SessionLog.START``).
TensorBoard's readers then discard every event of a step above S written before it, so the
repeated steps replace the abandoned ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ebmkit.loggers.base import Logger, RunStart, flatten, recipe_yaml
from ebmkit.registry import LOGGERS

FOLDER = "tensorboard"


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    """TensorBoard events in RUN/tensorboard: scalars, pictures, the recipe as text and hyperparameters."""

    requires = ("tensorboard", "torch-ebmkit[tensorboard]")

    def start(self, run: RunStart) -> None:
        self.log_dir = self.run_dir / FOLDER
        self.writer = self._writer(purge_after=run.step if run.resumed else None)
        if not run.resumed:
            self._describe(run.recipe)

    def _writer(self, purge_after: int | None):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.log_dir), purge_step=None if purge_after is None else purge_after + 1)

    def _describe(self, recipe: dict) -> None:
        """The recipe as text (Markdown: indented, it shows as code) and as hyperparameters."""
        from torch.utils.tensorboard.summary import hparams

        self.writer.add_text("recipe", "    " + recipe_yaml(recipe).replace("\n", "\n    "), 0)
        options = {key: value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else str(value)
                   for key, value in flatten(recipe).items()}
        metrics = {"loss": 0.0, recipe["train"]["eval_metric"]: 0.0}  # names only: the scalars of those tags
        writer = self.writer._get_file_writer()  # into this run's own files, where add_hparams would open a sub-run
        for summary in hparams(options, metrics):
            writer.add_summary(summary)
        self.writer.flush()

    def log(self, row: dict[str, float], wall_time: float) -> None:
        step = row["step"]
        for key, value in row.items():
            if key != "step":
                self.writer.add_scalar(key, value, step, walltime=wall_time)
        self.writer.flush()

    def picture(self, name: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(name, pixels, step, dataformats="HWC")
        self.writer.flush()

    def rewind(self, step: int) -> None:
        self.writer.close()
        self.writer = self._writer(purge_after=step)

    def rollback(self, record: dict[str, Any]) -> None:
        step = record["restarted_from"]
        self.writer.add_scalar("rollbacks", record["rollback"], step)
        self.writer.add_text("rollbacks", f"rollback {record['rollback']}: {record['problem']}; back to step {step} "
                                          f"with seed {record['seed']}", step)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()
