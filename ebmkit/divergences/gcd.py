"""Generalized contrastive divergence (DxMI, Yoon et al. 2024, Eq. 5 and §3.2).

GCD is the minimax game min_q max_π KL(p ‖ q) − KL(π ‖ q) between the EBM q ∝ exp(−E/τ) and
a sampler π; Z cancels between the two KLs. Its energy step, with x⁺ data and x⁻ the final
states of fresh sampler trajectories (detached), is (specs/dxmi.md §2.2)

    L_E = mean E(x⁺) − mean E(x⁻) + γ · (mean E(x⁺)² + mean E(x⁻)²)

on the level-0 (data) energy. The γ·E² term keeps energies O(1) (two separable sets settle at
E(x⁺) ≈ −½, E(x⁻) ≈ +½ for γ = 1); there is no gradient penalty and no temperature here —
τ enters only the sampler's running costs. The sampler's side of the game is the sampler's
own objective (`dp_policy`: DxDP), so `sampler_loss` is the base class's. The loss is `cd`'s
(IGEBM's α is DxMI's γ): both call `ebmkit.divergences.cd.contrast`.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from ebmkit.compose import Need
from ebmkit.divergences.base import Divergence
from ebmkit.divergences.cd import contrast, level_zero_batch
from ebmkit.registry import DIVERGENCES, Options
from ebmkit.types import LossOutput, TrainingBatch


@DIVERGENCES.register("gcd")
class GeneralizedContrastiveDivergence(Divergence):
    """DxMI's energy step: contrast data with sampler outputs, plus γ·(E⁺² + E⁻²)."""

    class Options(Options):
        gamma: float = Field(1.0, ge=0, description="γ of the energy-magnitude term (1 in every DxMI experiment)")

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return (Need("sampler", "fresh_samples"),)

    def training_batch(self, x0: Tensor, generator=None) -> TrainingBatch:
        return level_zero_batch(x0)

    def energy_loss(self, batch: TrainingBatch, negatives: Tensor, energy) -> LossOutput:
        return contrast(self, batch, negatives, energy, self.config.gamma)
