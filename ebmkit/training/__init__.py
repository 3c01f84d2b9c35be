"""The trainer core: one loop, checkpoints, EMA, evaluation and pictures for every recipe."""

from ebmkit.training.checkpoint import CheckpointError
from ebmkit.training.rundir import RunDirectoryError
from ebmkit.training.trainer import DivergenceError, Trainer, TrainingError

__all__ = ["Trainer", "TrainingError", "DivergenceError", "CheckpointError", "RunDirectoryError"]
