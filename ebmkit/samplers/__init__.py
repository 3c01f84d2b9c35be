"""Samplers: where negatives come from, and how a trained model generates."""

from ebmkit.registry import SAMPLERS
from ebmkit.samplers.base import Sampler, TrainingBatch
from ebmkit.samplers.langevin import LangevinSampler

__all__ = ["SAMPLERS", "Sampler", "TrainingBatch", "LangevinSampler"]
