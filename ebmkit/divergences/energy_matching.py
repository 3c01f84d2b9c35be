"""Energy Matching (Balcerak et al., NeurIPS 2025): one time-independent scalar energy E_θ(x) trained
as an optimal-transport flow and, in a second phase, as an EBM. Formulas: specs/energy_matching.md
§3; official code m1balcerak/EnergyMatching, experiments/cifar10/train_cifar_multigpu.py:59-155.

EM's time runs from noise (t = 0) to data (t = 1). Per step, with x₁ a data batch, x₀ ~ N(0, I)
paired with it by a coupling (`ebmkit.couplings`; exact minibatch OT in the paper), t ~ U(0, 1):

    x_t = t·x₁ + (1 − t)·x₀ + σ η,   u_t = x₁ − x₀,                       (torchcfm μ_t, σ_t = σ)
    L_OT = mean_i [ w(t_i) · mean_dims ( −∇ₓE_θ(x_t,i) − u_t,i )² ]        (train_cifar:85-91)
    w(t) = 1 for t < τ*,  1 − (t − τ*)/(1 − τ*) for τ* ≤ t < 1            (utils_cifar_imagenet.py:464-475)

the velocity field being −∇ₓE (a double backward: θ's gradient goes through ∇ₓE). The contrastive
phase adds, on a second, independent data batch x⁺ and the sampler's negatives x⁻ (detached),

    L = L_OT + max( λ_CD · ( mean E(x⁺) − trimmed-mean E(x⁻) ), −c )      (train_cifar:96-154)

the trimmed mean dropping the ⌊f·B⌋ highest negative energies (f = 0.1), c the hinge (0.02; null:
none): below −c the term is constant and gives no gradient. λ_CD = 0 (the warm-up phase) turns the
term off, and with it the sampler (``needs_negatives``).

The first data batch is x⁺ (the positives, which a sampler may start chains from, as EM's
``split_negative`` does); the second, ``TrainingBatch.more[0]``, is the flow batch x₁.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pydantic import Field, field_validator
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

import ebmkit.couplings  # noqa: F401  (registers the couplings)
import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.divergences.base import Divergence, energy_metrics
from ebmkit.divergences.cd import level_zero_batch
from ebmkit.registry import COUPLINGS, DIVERGENCES, Options
from ebmkit.types import LossOutput, TrainingBatch, Update


@DIVERGENCES.register("energy_matching")
class EnergyMatching(Divergence):
    """Energy Matching: −∇ₓE regressed onto OT-coupled flow velocities, plus a clamped, trimmed CD term."""

    needs_schedule = False
    data_batches = 2  # x⁺ for the contrastive term, x₁ for the flow (EM draws both every step, :325-327)

    class Options(Options):
        lambda_cd: float = Field(1e-3, ge=0, description="λ_CD, the contrastive term's weight (EM images: 1e-3 in "
                                                         "the main phase, 0 in the warm-up; 2D: 2)")
        cd_neg_clamp: Optional[float] = Field(0.02, gt=0, description="c of max(λ_CD·(E⁺ − E⁻), −c) (EM CIFAR-10: "
                                                                      "0.02); null: no hinge (EM 2D)")
        cd_trim_fraction: float = Field(0.1, ge=0, lt=1, description="f: the ⌊f·B⌋ highest negative energies are "
                                                                     "left out of their mean (EM images: 0.1; 2D: 0)")
        flow_weight_cutoff: float = Field(1.0, ge=0, le=1, description="τ* of the flow weight w(t) (EM images: 1, "
                                                                       "w ≡ 1; 2D main phase: 0.8)")
        sigma: float = Field(0.0, ge=0, description="σ, the path noise of x_t (EM images: 0; 2D: 0.1)")
        coupling: dict[str, Any] = Field(default_factory=lambda: {"name": "exact_ot"},
                                         description="how noise is paired with data (ebmkit.couplings): exact_ot "
                                                     "(resample: true as EM's code) or independent")

        @field_validator("coupling", mode="before")
        @classmethod
        def _known_coupling(cls, spec):
            return COUPLINGS.validate(spec)

    @property
    def needs_negatives(self) -> bool:
        return self.config.lambda_cd > 0

    @property
    def differentiates_twice(self) -> bool:
        return True

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return (Need("sampler", "level0_negatives"),) if options.lambda_cd > 0 else ()

    def __init__(self, options, *, schedule):
        super().__init__(options, schedule=schedule)
        self.coupling = COUPLINGS.build(options.coupling)

    def training_batch(self, x0: Tensor, generator=None) -> TrainingBatch:
        """The contrastive positives x⁺ at level 0; the flow batch arrives in ``more``."""
        return level_zero_batch(x0)

    # -- the flow term ---------------------------------------------------------------------------
    def flow_weight(self, t: Tensor) -> Tensor:
        """w(t): 1 below τ*, falling linearly to 0 at t = 1 (utils_cifar_imagenet.py:464-475)."""
        cutoff = self.config.flow_weight_cutoff
        if cutoff >= 1:
            return torch.ones_like(t)
        return torch.where(t < cutoff, torch.ones_like(t), (1 - (t - cutoff) / (1 - cutoff)).clamp(min=0))

    def flow_pairs(self, x1: Tensor, generator=None) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, u_t, t) of one flow batch: x₀ ~ N(0, I) (the schedule's prior where there is one), coupled
        to x₁, t ~ U(0, 1), the path noise η; drawn in this order, η whatever σ (the stream does not
        depend on its value)."""
        if self.schedule is not None:
            x0 = self.schedule.prior_sample(x1.shape, generator=generator, device=x1.device).to(x1.dtype)
        else:
            x0 = rnd.randn(x1.shape, generator, x1.device, x1.dtype)
        x0, x1 = self.coupling(x0, x1, generator)
        t = rnd.rand((x1.shape[0],), generator, x1.device, x1.dtype)
        eta = rnd.randn_like(x1, generator)
        tv = t.view(-1, *[1] * (x1.dim() - 1))
        return tv * x1 + (1 - tv) * x0 + self.config.sigma * eta, x1 - x0, t

    def flow_loss(self, x_t: Tensor, u_t: Tensor, t: Tensor, energy) -> tuple[Tensor, Tensor]:
        """(L_OT, the energies at x_t): w(t)-weighted per-dimension MSE of −∇ₓE(x_t) against u_t."""
        # attention's fused kernels (flash, memory-efficient) have no double backward: the math one does
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            x = x_t.detach().requires_grad_(True)
            e = self.data_energy(energy, x)
            (grad,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        per_sample = (-grad - u_t).flatten(1).pow(2).mean(1)
        return (self.flow_weight(t) * per_sample).mean(), e

    # -- the contrastive term ------------------------------------------------------------------------
    def contrastive_loss(self, positives: Tensor, negatives: Tensor, energy) -> tuple[Tensor, dict[str, Tensor]]:
        """max(λ_CD (mean E(x⁺) − trimmed-mean E(x⁻)), −c), one network pass over both (train_cifar:131-152)."""
        c, n = self.config, positives.shape[0]
        e = self.data_energy(energy, torch.cat([positives, negatives.detach()]))
        e_pos, e_neg = e[:n], e[n:]
        keep = e_neg.shape[0] - math.floor(c.cd_trim_fraction * e_neg.shape[0])
        trimmed = torch.sort(e_neg).values[:keep].mean()  # the highest ⌊f·B⌋ left out
        term = c.lambda_cd * (e_pos.mean() - trimmed)
        if c.cd_neg_clamp is not None:
            term = torch.clamp(term, min=-c.cd_neg_clamp)  # constant, hence no gradient, below −c
        return term, {**energy_metrics(e_pos, e_neg), "cd_term": term.detach()}

    def energy_loss(self, batch: TrainingBatch, negatives: Tensor | None, energy, generator=None) -> LossOutput:
        """L_OT on the flow batch (``batch.more[0]``), plus the contrastive term on x⁺ and the
        negatives where λ_CD > 0."""
        if not batch.more:
            raise ValueError("energy_matching reads two data batches: the flow batch arrives in TrainingBatch.more")
        flow, e_flow = self.flow_loss(*self.flow_pairs(batch.more[0], generator), energy)
        metrics = {"flow_loss": flow.detach(), "e_flow": e_flow.detach().mean()}
        if not self.needs_negatives:
            return LossOutput(flow, metrics)
        if negatives is None:
            raise ValueError(f"energy_matching with lambda_cd={self.config.lambda_cd} needs negatives")
        term, cd_metrics = self.contrastive_loss(batch.positives, negatives, energy)
        return LossOutput(flow + term, {**metrics, **cd_metrics})

    def plan(self, batch: TrainingBatch, record, energy, sampler, generator=None):
        """One update of the energy; no sampler call while λ_CD = 0 (``record`` is None)."""
        negatives = None if record is None else record.negatives
        yield Update("energy", lambda: self.energy_loss(batch, negatives, energy, generator),
                     "energy matching loss ({divergence})", loss_key="loss", grad_key="grad_norm")
