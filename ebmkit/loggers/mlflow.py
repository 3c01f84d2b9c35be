"""An MLflow run: every row's scalars as metrics, the pictures as step images, the recipe as
parameters and ``recipe.yaml``.

Where: ``MLFLOW_TRACKING_URI`` (and MLflow's other environment variables: credentials, a
server's certificate) when it is set; otherwise a local store beside the run directory,
``sqlite:///PARENT/mlflow.db`` with artifacts in ``PARENT/mlartifacts``, so that every run under
``runs/`` lands in one store (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``). It is
SQLite, MLflow's own local default since 3.x, where its file store (``./mlruns``) is refused unless
``MLFLOW_ALLOW_FILE_STORE=true``; with that set, ``MLFLOW_TRACKING_URI=file:…`` works too.

MLflow keeps every point it receives, so this logger does not rewind: it gets a step once a
checkpoint covers it (`ebmkit.loggers.base`). The run id is kept in the run's loggers.json, and
``--resume`` continues that run in the store it started in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from ebmkit.loggers.base import Logger, RunStart, flatten, recipe_yaml
from ebmkit.registry import LOGGERS, Options

STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
BATCH = 100  # parameters per log_batch, MLflow's limit


def local_store(run_dir: Path) -> tuple[str, str]:
    """The default tracking URI and artifact location: beside the run directory."""
    parent = Path(run_dir).absolute().parent
    return f"sqlite:///{parent / 'mlflow.db'}", (parent / "mlartifacts").as_uri()


@LOGGERS.register("mlflow")
class MLflowLogger(Logger):
    """An MLflow run: metrics, step images, the recipe as parameters; a local store beside the run, or MLFLOW_TRACKING_URI."""

    requires = ("mlflow", "torch-ebmkit[mlflow]")
    rewinds = False

    class Options(Options):
        experiment: str = Field("ebmkit", min_length=1, description="the MLflow experiment the run goes in")

    def start(self, run: RunStart) -> None:
        from mlflow.tracking import MlflowClient

        if "run_id" in self.state:  # the same run, in the store it started in
            self.client = MlflowClient(tracking_uri=self.state["tracking_uri"])
            self.run_id = self.state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        uri, artifacts = os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:
            uri, artifacts = local_store(self.run_dir)
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(self.config.experiment)
        experiment = found.experiment_id if found is not None else \
            self.client.create_experiment(self.config.experiment, artifact_location=artifacts)
        self.run_id = self.client.create_run(experiment, run_name=run.name,
                                             tags={"ebmkit.run_dir": str(self.run_dir.absolute())}).info.run_id
        self.state.update(tracking_uri=uri, run_id=self.run_id)
        from mlflow.entities import Param

        params = [Param(key, str(value)) for key, value in flatten(run.recipe).items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + BATCH])
        self.client.log_text(self.run_id, recipe_yaml(run.recipe), "recipe.yaml")

    def log(self, row: dict[str, float], wall_time: float) -> None:
        from mlflow.entities import Metric

        stamp, step = int(wall_time * 1000), row["step"]
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, stamp, step) for key, value in row.items()
                                                    if key != "step"])

    def picture(self, name: str, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as image:
            self.client.log_image(self.run_id, image.convert("RGB"), key=name, step=step)

    def rollback(self, record: dict[str, Any]) -> None:
        self.client.log_metric(self.run_id, "rollbacks", record["rollback"], step=record["restarted_from"])
        self.client.set_tag(self.run_id, f"rollback.{record['rollback']}",
                            f"{record['problem']}; back to step {record['restarted_from']} with seed {record['seed']}")

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, STATUS[status])
