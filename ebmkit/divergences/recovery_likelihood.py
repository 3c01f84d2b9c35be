"""Recovery likelihood (DRL §5, CDRL §5): contrast positives and Langevin negatives per level.

    loss = mean_batch  ω_t · (E(y⁺, t) − E(y⁻, t)),   y⁺ = a_{t+1} x_t,  y⁻ ~ p_θ(y | x_{t+1})

whose gradient is the maximum-likelihood gradient of log p_θ(x_t | x_{t+1}) weighted by ω_t.
The papers' code writes the contrast on the network output g = −c_t E with ω = σ_1/σ_{t+1};
``contrast="energy"`` with ``weighting="uniform"`` is the unweighted likelihood instead.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ebmkit.compose import Need
from ebmkit.divergences.base import Divergence, energy_metrics
from ebmkit.registry import DIVERGENCES, Options
from ebmkit.types import LossOutput, TrainingBatch


@DIVERGENCES.register("recovery_likelihood")
class RecoveryLikelihood(Divergence):
    """Contrastive recovery likelihood of x_t given x_{t+1}, with per-level weights."""

    class Options(Options):
        weighting: Literal["sigma_ratio", "uniform"] = "sigma_ratio"
        contrast: Literal["network", "energy"] = "network"
        shared_noise: bool = False
        """CDRL's variance reduction: x_t and x_{t+1} share one ε (right marginals)."""

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return (Need("sampler", "recovery_negatives"),)

    def __init__(self, options, *, schedule):
        super().__init__(options, schedule=schedule)
        sig = schedule.sigmas[1:].float()  # σ_{t+1}, t = 0..T−1
        self.level_weights = sig[0] / sig if options.weighting == "sigma_ratio" else torch.ones_like(sig)
        self.recovery_scale = schedule.recovery_scale.float()

    def training_batch(self, x0: Tensor, generator=None) -> TrainingBatch:
        t = self.schedule.levels(x0.shape[0], generator=generator, device=x0.device)
        x_t, x_next = self.schedule.q_pair(x0, t, shared_noise=self.config.shared_noise, generator=generator)
        y = self.schedule.gather(self.recovery_scale, t, x_t) * x_t
        return TrainingBatch(positives=y, condition=x_next, level=t, data=x0)

    def energy_loss(self, batch: TrainingBatch, negatives: Tensor, energy) -> LossOutput:
        t = batch.level
        n = t.shape[0]
        e = energy(torch.cat([batch.positives, negatives]), torch.cat([t, t]))
        e_pos, e_neg = e[:n], e[n:]
        w = self.level_weights.to(e.device)[t]
        if self.config.contrast == "network":
            w = w * energy.output_scale(t)
        loss = (w * (e_pos - e_neg)).mean()
        return LossOutput(
            loss,
            energy_metrics(e_pos, e_neg),
        )

    def data_energy(self, energy, x: Tensor) -> Tensor:
        # The level-0 EBM lives on y = a_1 x_0; evaluating it at a_1 x gives p(x_0) up to Z.
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return energy(self.recovery_scale[0].item() * x, t)
