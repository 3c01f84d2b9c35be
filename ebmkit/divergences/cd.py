"""Contrastive divergence on one energy, with the E² regulariser (IGEBM, JEM, ICD; specs/pcd.md §5.1).

With x⁺ a data batch and x⁻ the sampler's negatives (detached: no gradient through the chain),

    L(θ) = mean_i E_θ(x⁺_i) − mean_j E_θ(x⁻_j) + α ( mean_i E_θ(x⁺_i)² + mean_j E_θ(x⁻_j)² )

on the level-0 energy. α = 1 in IGEBM (``l2_coeff``, train.py:65, 850-851) and ICD (train.py:414-415),
0 in JEM (train_wrn_ebm.py:321-330). PCD is single-level: there is no schedule, the positives are
the clean data at level 0.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from ebmkit.compose import Need
from ebmkit.divergences.base import Divergence, energy_metrics
from ebmkit.registry import DIVERGENCES, Options
from ebmkit.types import LossOutput, TrainingBatch


@DIVERGENCES.register("cd")
class ContrastiveDivergence(Divergence):
    """Contrastive divergence: E(x⁺) − E(x⁻) + α·(E⁺² + E⁻²) at level 0, no schedule (IGEBM, JEM)."""

    needs_schedule = False

    class Options(Options):
        alpha: float = Field(1.0, ge=0, description="α of the energy-magnitude term (IGEBM, ICD: 1; JEM: 0)")

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return (Need("sampler", "fresh_samples"),)

    def training_batch(self, x0: Tensor, generator=None) -> TrainingBatch:
        return level_zero_batch(x0)

    def energy_loss(self, batch: TrainingBatch, negatives: Tensor, energy) -> LossOutput:
        return contrast(self, batch, negatives, energy, self.config.alpha)


def level_zero_batch(x0: Tensor) -> TrainingBatch:
    """Positives are the clean data at level 0; there is nothing to condition on."""
    level = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    return TrainingBatch(positives=x0, condition=x0, level=level, data=x0)


def contrast(divergence: Divergence, batch: TrainingBatch, negatives: Tensor, energy, weight: float) -> LossOutput:
    """mean E(x⁺) − mean E(x⁻) + weight · (mean E(x⁺)² + mean E(x⁻)²) on the level-0 energy: `cd`'s
    loss with weight α, DxMI's `gcd` with weight γ. One network pass over both halves."""
    n = batch.positives.shape[0]
    e = divergence.data_energy(energy, torch.cat([batch.positives, negatives.detach()]))
    e_pos, e_neg = e[:n], e[n:]
    loss = e_pos.mean() - e_neg.mean() + weight * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
    return LossOutput(loss, energy_metrics(e_pos, e_neg))
