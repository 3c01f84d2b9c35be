"""Cooperative sampler (CDRL, Zhu et al. 2024, §4): an initializer proposes, Langevin refines.

For the pair (x_t, x_{t+1}) the initializer is a Gaussian over y = a_{t+1} x_t,

    y⁰ = μ_φ(x_{t+1}, t+1) + √β̃_t · m_t · ξ,   μ_φ(x, ·) = x + NN_φ(x, ·),

with β̃_t the DDPM posterior variance and NN_φ's output layer zero at initialisation, so the
first proposals are DRL's chain start x_{t+1}. A few steps of the `langevin` sampler refine y⁰
into y^K, and the initializer learns from the refinement displacement:

    L_φ = mean_batch ‖sg(y^K) − y⁰‖²   (sum over dimensions; gradient only through μ_φ).

`pretrain_loss` (used when ``train.pretrain_steps`` > 0; not in the paper, whose initializer
starts at x_{t+1}) regresses μ_φ on real pairs instead, ‖a_{t+1} x_t − μ_φ(x_{t+1}, t+1)‖²:
the initializer then starts as the posterior mean E[y | x_{t+1}], the centre of the
distribution the refinement later teaches it. ``regression_weight`` > 0 keeps that regression
in L_φ at every step, an anchor that is not in the paper either: where the refinement moves
its samples little, it holds the per-level mean shift that generation compounds over T levels.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Need, declaration, fit
from ebmkit.networks.init import zero_output_layer
from ebmkit.networks import build_network
from ebmkit.registry import NETWORKS, SAMPLERS
from ebmkit.samplers.base import Sampler, SamplerOptions, chain_move
from ebmkit.types import LossOutput, SampleRecord, TrainingBatch


@SAMPLERS.register("cooperative")
class CooperativeSampler(Sampler):
    """CDRL: a learned initializer per level, refined by K Langevin steps; learns refined − initial."""

    learnable = True
    pretrainable = True  # the initializer regresses on real pairs first (`pretrain_loss`)

    class Options(SamplerOptions):
        initializer: Any = Field(default_factory=lambda: {"name": "mlp", "width": 64, "depth": 2, "activation": "silu"},
                                 description="network spec of NN_φ(x_{t+1}, t+1)")
        refine: Any = Field(default_factory=lambda: {"name": "langevin", "n_steps": 15, "generate_noise_scale": 1.0},
                            description="sampler spec of the refinement stage")
        initial_noise: bool = Field(True, description="add √β̃ m ξ to the proposal (CDRL's p_with_noise)")
        denoise_scale: float = Field(2.0, gt=0, description="2.0 = CDRL's code (see specs/cdrl.md §10)")
        regression_weight: float = Field(0.0, ge=0, description="weight of pretrain_loss, on fresh real pairs, added "
                                         "to the initializer's loss at every step (0 = the paper)")

        @field_validator("initializer")
        @classmethod
        def _network(cls, spec):
            return NETWORKS.validate(spec)

        @field_validator("refine")
        @classmethod
        def _refine(cls, spec):
            spec = SAMPLERS.validate(spec)
            refiner = SAMPLERS.get(spec["name"]).obj
            if getattr(refiner, "learnable", False) or not hasattr(refiner, "refine"):
                raise ValueError("refine must be a non-learnable sampler with a refine stage, as langevin is")
            return spec

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"recovery_negatives"})

    @classmethod
    def fit(cls, options, data):
        return options.model_copy(update={"refine": fit("sampler", options.refine, data)})

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        # the refinement's needs are the chain's; an option that meets one is the refine stage's
        refine = tuple(replace(n, instead=n.instead.replace("sampler.", "sampler.refine.", 1))
                       for n in declaration("sampler", options.refine)[1])
        return super().needs(options) + refine

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        self.initializer = build_network(options.initializer, shape=self.shape, num_levels=schedule.num_levels,
                                         out_dim=math.prod(self.shape))
        zero_output_layer(self.initializer)
        self.refiner = SAMPLERS.build(options.refine, schedule=schedule, shape=shape, energy=energy,
                                      data_energy=data_energy)
        s = schedule
        self.register_buffer("proposal_std", (s.posterior_variance.sqrt() * s.recovery_scale).float(), persistent=False)

    def proposal_mean(self, x_next: Tensor, t: Tensor) -> Tensor:
        """μ_φ(x_{t+1}, t+1) = x_{t+1} + NN_φ(x_{t+1}, t+1)."""
        return x_next + self.initializer(x_next, t + 1).view_as(x_next)

    def propose(self, x_next: Tensor, t: Tensor, generator=None) -> Tensor:
        """y⁰ = μ_φ(x_{t+1}, t+1) + √β̃_t m_t ξ (graph kept, for the initializer's loss)."""
        mean = self.proposal_mean(x_next, t)
        if not self.config.initial_noise:
            return mean
        noise = rnd.randn_like(x_next, generator)
        std = self.proposal_std[t].view((-1,) + (1,) * (x_next.dim() - 1))
        return mean + std * noise

    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        """The refined y^K, with the proposal y⁰ it started from (its graph kept for `loss`)."""
        proposal = self.propose(batch.condition, batch.level, generator)
        negatives = self.refiner.refine(proposal, batch.condition, batch.level, energy,
                                        self.refiner.config.noise_scale, generator)
        # chain_move: how far Langevin moved the initializer's proposals
        return SampleRecord(negatives, {"proposal": proposal}, metrics={"chain_move": chain_move(negatives, proposal)})

    def loss(self, batch: TrainingBatch, record: SampleRecord, energy, generator=None) -> LossOutput:
        """‖sg(y^K) − y⁰‖² on the record's proposal."""
        loss = (record.negatives.detach() - record.saved["proposal"]).flatten(1).pow(2).sum(1).mean()
        metrics = {"sampler_loss": loss.detach()}
        if self.config.regression_weight:
            # exact pairs drawn afresh from the data: the batch's may share their noise (CDRL's pairs)
            regression = self.pretrain_loss(batch.data, generator).loss
            loss = loss + self.config.regression_weight * regression
            metrics["regression_loss"] = regression.detach()
        return LossOutput(loss, metrics)

    def pretrain_loss(self, x0: Tensor, generator=None) -> LossOutput:
        """‖a_{t+1} x_t − μ_φ(x_{t+1}, t+1)‖² on real pairs, t ~ U{0..T−1} (sum over dimensions)."""
        s = self.schedule
        t = s.levels(x0.shape[0], generator=generator, device=x0.device)
        x_t, x_next = s.q_pair(x0, t, generator=generator)
        y = s.gather(s.recovery_scale, t, x_t) * x_t
        loss = (y - self.proposal_mean(x_next, t)).flatten(1).pow(2).sum(1).mean()
        return LossOutput(loss, {"pretrain_loss": loss.detach()})

    @torch.no_grad()
    def generate(self, n: int, energy, generator=None) -> Tensor:
        return self.finish(self.refiner.generate(n, energy, generator, propose=self.propose), energy)
