"""Denoising score matching on an energy, at every noise level (NCSN, Song & Ermon 2019/2020;
Salimans & Ho 2021; the ε-loss of DDPM with ε̂ = σ̄_t ∇ₓE). Formulas: specs/dsm.md §2.

The model's score is the energy's negative input-gradient, s_θ(x, t) = −∇ₓE_θ(x, t). Per sample,
t ~ U{ℓ..T} (ℓ = 0 where σ̄_0 > 0, else 1: level 0 of a DDPM schedule is exact data, where
q(x_0 | x) has no score), ε ~ N(0, I), x_t = √ᾱ_t x + σ̄_t ε, and ∇ log q(x_t | x) = −ε/σ̄_t:

    weighting sigma_sq:  ℓ_t = ½ σ̄_t² ‖s_θ(x_t, t) + ε/σ̄_t‖² = ½ ‖ε − σ̄_t ∇ₓE_θ(x_t, t)‖²
    weighting none:      ℓ_t = ½ ‖s_θ(x_t, t) + ε/σ̄_t‖²

summed (NCSN) or averaged (DDPM, RRR) over the data's dimensions, averaged over the batch. The
θ-gradient goes through ∇ₓE: a double backward (``differentiates_twice``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.divergences.base import Divergence
from ebmkit.registry import DIVERGENCES, Options
from ebmkit.types import LossOutput, TrainingBatch, Update


@DIVERGENCES.register("dsm")
class DenoisingScoreMatching(Divergence):
    """Multi-level denoising score matching of s = −∇ₓE; no negatives, one energy update per step."""

    needs_negatives = False

    class Options(Options):
        weighting: Literal["sigma_sq", "none"] = Field(
            "sigma_sq", description="λ(t) = σ̄_t² (NCSN's anneal_power 2, DDPM's L_simple) or 1")
        reduce: Literal["sum", "mean"] = Field(
            "sum", description="over the data's dimensions: sum (NCSN's losses/dsm.py) or mean (DDPM, RRR)")

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        # it trains E at level T too, and only a sampler that reads the energies as marginals generates
        # from them ('marginal_generation' is introduced by the reverse_diffusion sampler)
        return (Need("energy", "level_T"), Need("sampler", "marginal_generation"))

    @property
    def differentiates_twice(self) -> bool:
        return True

    def __init__(self, options, *, schedule):
        super().__init__(options, schedule=schedule)
        self.lowest_level = 0 if schedule.sigmas_cumprod[0] > 0 else 1

    def training_batch(self, x0: Tensor, generator=None) -> TrainingBatch:
        """positives x_t at t ~ U{ℓ..T}; the condition is the clean x, on which q(x_t | x) is conditioned."""
        t = rnd.randint(self.lowest_level, self.schedule.num_levels + 1, (x0.shape[0],), generator=generator,
                        device=x0.device)
        x_t = self.schedule.q_sample(x0, t, generator=generator)
        return TrainingBatch(positives=x_t, condition=x0, level=t, data=x0)

    def energy_loss(self, batch: TrainingBatch, negatives: Tensor | None, energy) -> LossOutput:
        """The DSM loss of the batch; ``negatives`` are not used (there are none)."""
        t, x0 = batch.level, batch.condition
        sigma = self.schedule.gather(self.schedule.sigmas_cumprod, t, x0)
        scale = self.schedule.gather(self.schedule.sqrt_alphas_cumprod, t, x0)
        x = batch.positives.detach()
        eps = (x - scale * x0) / sigma  # −σ̄_t ∇ log q(x_t | x), as NCSN's target −(x̃ − x)/σ²
        # attention's fused kernels (flash, memory-efficient) have no double backward: the math one does
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            x = x.requires_grad_(True)
            e = energy(x, t)
            (grad,) = torch.autograd.grad(e.sum(), x, create_graph=True)  # ∇ₓE = −s_θ
        if self.config.weighting == "sigma_sq":
            residual = eps - sigma * grad  # σ̄_t (s_θ + ε/σ̄_t)
        else:
            residual = eps / sigma - grad  # s_θ + ε/σ̄_t
        per_dim = 0.5 * residual.flatten(1).pow(2)
        per_sample = per_dim.sum(1) if self.config.reduce == "sum" else per_dim.mean(1)
        return LossOutput(per_sample.mean(), {"e_mean": e.detach().mean()})

    def plan(self, batch: TrainingBatch, record, energy, sampler, generator=None):
        """One update of the energy; nothing was sampled (``record`` is None)."""
        yield Update("energy", lambda: self.energy_loss(batch, None, energy), "denoising score matching ({divergence})",
                     loss_key="loss", grad_key="grad_norm")

    def data_energy(self, energy, x: Tensor) -> Tensor:
        """The lowest trained level's energy: E(x, 0) where level 0 keeps noise; on a schedule whose
        level 0 is exact data (never trained), E(√ᾱ_1 x, 1), the density of x_1/√ᾱ_1, x smoothed
        by N(0, σ̄_1²/ᾱ_1) (up to a constant)."""
        level = self.lowest_level
        t = torch.full((x.shape[0],), level, dtype=torch.long, device=x.device)
        return energy(x if level == 0 else self.schedule.sqrt_alphas_cumprod[level].item() * x, t)
