"""Samplers: where negatives come from, and how a trained model generates."""

from ebmkit.registry import SAMPLERS
from ebmkit.samplers.adversarial import AdversarialSampler
from ebmkit.samplers.base import Sampler, TrainingBatch
from ebmkit.samplers.cooperative import CooperativeSampler
from ebmkit.samplers.denoise import energy_denoise
from ebmkit.samplers.dp_policy import DiffusionPolicySampler
from ebmkit.samplers.langevin import LangevinSampler
from ebmkit.samplers.replay import ReplaySampler
from ebmkit.samplers.reverse_diffusion import ReverseDiffusionSampler
from ebmkit.samplers.tempered_langevin import TemperedLangevinSampler

__all__ = ["SAMPLERS", "Sampler", "TrainingBatch", "LangevinSampler", "CooperativeSampler", "AdversarialSampler",
           "DiffusionPolicySampler", "ReplaySampler", "ReverseDiffusionSampler",
           "TemperedLangevinSampler", "energy_denoise"]
