"""The trainer core: one loop, checkpoints, EMA, evaluation and pictures for every recipe."""

from ebmkit.training.checkpoint import CheckpointError
from ebmkit.training.trainer import Trainer, TrainingError

__all__ = ["Trainer", "TrainingError", "CheckpointError"]
