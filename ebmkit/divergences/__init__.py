"""Divergences: the objectives the energy (and learnable samplers) minimise."""

from ebmkit.divergences.adversarial import (AdversarialDivergence, ForwardKL, Jeffrey, MassCoveringKL, ModeSeekingKL,
                                            ReverseKL)
from ebmkit.divergences.base import Divergence, LossOutput
from ebmkit.divergences.cd import ContrastiveDivergence
from ebmkit.divergences.dsm import DenoisingScoreMatching
from ebmkit.divergences.energy_matching import EnergyMatching
from ebmkit.divergences.gcd import GeneralizedContrastiveDivergence
from ebmkit.divergences.recovery_likelihood import RecoveryLikelihood
from ebmkit.registry import DIVERGENCES

__all__ = ["DIVERGENCES", "Divergence", "LossOutput", "RecoveryLikelihood", "Jeffrey", "ModeSeekingKL", "MassCoveringKL",
           "ForwardKL", "ReverseKL",
           "AdversarialDivergence", "GeneralizedContrastiveDivergence", "ContrastiveDivergence",
           "DenoisingScoreMatching", "EnergyMatching"]
