"""Loggers: where a run's reports go, named in ``train.loggers`` (`ebmkit.loggers.base`).

``jsonl`` (stats.jsonl, the default) needs nothing; ``tensorboard``, ``mlflow`` and ``wandb``
need their packages, the extras of the same names (``pip install "torch-ebmkit[tensorboard]"``),
imported only when a run starts with them. A plugin adds one under the entry-point group
``ebmkit.loggers``.
"""

from ebmkit.loggers.base import Logger, RunStart, missing_package
from ebmkit.loggers.jsonl import JsonlLogger
from ebmkit.loggers.mlflow import MLflowLogger
from ebmkit.loggers.tensorboard import TensorBoardLogger
from ebmkit.loggers.wandb import WandbLogger
from ebmkit.registry import LOGGERS

__all__ = ["LOGGERS", "Logger", "RunStart", "missing_package", "JsonlLogger", "TensorBoardLogger", "MLflowLogger",
           "WandbLogger"]
