"""Generation from per-level marginal energies, the score being s(x, t) = −∇ₓE(x, t)
(specs/dsm.md §5): the model that denoising score matching (`dsm`) trains.

``ancestral`` — the schedule's reverse process (DDPM), one energy gradient per level. For
t = T..1, with g = ∇ₓE(x_t, t):

    x̂_0 = (x_t − σ̄_t² g) / √ᾱ_t                       (Tweedie; optionally clipped to ±clip_x0)
    x_{t−1} = μ̃_{t−1}(x_t, x̂_0) + λ √v_t z,            μ̃ the mean of q(x_{t−1} | x_t, x̂_0)

v_t = β̃ (the posterior variance, ``variance: posterior``) or β_t (``forward``, RRR's
beta_forward); the last step (t = 1 → 0) returns the mean. Without clipping μ̃ = (x_t − β_t g)/√α_t.

``annealed_langevin`` — NCSN's annealed Langevin dynamics (ncsnv2 models/__init__.py:19-56) on
the schedule's levels. For t = T..ℓ (ℓ the lowest trained level), ``steps_per_level`` times

    x ← x − α_t ∇ₓE(x, t) + λ √(2α_t) z,    α_t = ε σ̄_t² / σ_ℓ²,   σ_ℓ² = σ̄_ℓ² / ᾱ_ℓ

then NCSN's denoising step (``denoise_last``), Tweedie at level ℓ: (x − σ̄_ℓ² ∇ₓE(x, ℓ))/√ᾱ_ℓ;
without it x/√ᾱ_ℓ. A VP level t is the VE level σ_t = σ̄_t/√ᾱ_t seen through x = √ᾱ_t x_VE.
``between_levels: keep`` hands the point to the next level as it is (the spec's VP form: each
level's marginal has about unit variance); ``rescale`` keeps its VE coordinates,
x ← x √(ᾱ_t/ᾱ_{t+1}), and the chain is then NCSN's x_VE ← x_VE + α'_t s_VE + √(2α'_t) z,
α'_t = ε σ_t²/σ_ℓ², exactly. Rescaling suits a geometric VE table (neighbouring σ's 4% apart);
on a DDPM cosine schedule the top levels' σ_t are 60× apart and the carried point overshoots.

Training needs no negatives from this sampler (the `dsm` divergence declares none). `sample`
still gives ones that mean something: the model's samples of each training level's marginal,
the chain above run from the source down to that sample's level.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, model_validator
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.registry import SAMPLERS
from ebmkit.samplers.base import Sampler, SamplerOptions
from ebmkit.samplers.sources import SourceOptions
from ebmkit.types import SampleRecord, TrainingBatch


def energy_gradient(energy, x: Tensor, t: Tensor) -> Tensor:
    """∇ₓE(x, t) = −s(x, t), without a graph."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x, t).sum(), x)
    return grad


@SAMPLERS.register("reverse_diffusion")
class ReverseDiffusionSampler(Sampler):
    """Ancestral sampling of the reverse process, or NCSN's annealed Langevin, on s = −∇ₓE."""

    capabilities = {"marginal_generation": "generation that reads E(x, t) as the energy of the marginal q(x_t) at "
                                           "every level, its score −∇ₓE(x, t), as denoising score matching trains "
                                           "it (not a recovery conditional)"}

    class Options(SamplerOptions, SourceOptions):
        method: Literal["ancestral", "annealed_langevin"] = "ancestral"
        variance: Literal["posterior", "forward"] = Field(
            "posterior", description="ancestral: the step's variance, β̃ of q(x_{t−1} | x_t, x_0) or the forward β_t")
        clip_x0: Optional[float] = Field(None, gt=0, description="ancestral: clip x̂_0 to ±clip_x0 (null: no clip)")
        steps_per_level: int = Field(5, ge=1, description="annealed_langevin: Langevin steps per level")
        eps: float = Field(1e-4, gt=0, description="annealed_langevin: ε of α_t = ε σ̄_t² ᾱ_ℓ / σ̄_ℓ²")
        between_levels: Literal["keep", "rescale"] = Field(
            "keep", description="annealed_langevin: the point goes to the next level as it is, or with its VE "
                                "coordinates kept (x √(ᾱ_t/ᾱ_{t+1}): NCSN's chain exactly)")
        denoise_last: bool = Field(True, description="annealed_langevin: NCSN's final step x + σ_ℓ² s at level ℓ")
        noise_scale: float = Field(1.0, ge=0, description="λ, the scale of the injected noise")

        @model_validator(mode="after")
        def _one_final_step(self):
            if self.method == "annealed_langevin" and self.denoise:
                raise ValueError("denoise is the ancestral chain's Tweedie step on level 0; annealed_langevin ends "
                                 "with its own (denoise_last)")
            return self

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"marginal_generation"})

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return super().needs(options) + (Need("energy", "level_T"),)  # the chain starts with E(x_T, T)

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        self.lowest_level = 0 if schedule.sigmas_cumprod[0] > 0 else 1

    # -- one step of each method --------------------------------------------------------------
    def ancestral_step(self, x: Tensor, level: int, energy, generator=None) -> Tensor:
        """x_t → x_{t−1} at ``level`` = t ≥ 1 (the mean alone when t = 1)."""
        s = self.schedule
        t = torch.full((x.shape[0],), level, dtype=torch.long, device=x.device)
        grad = energy_gradient(energy, x, t)
        x0 = (x - s.gather(s.sigmas_cumprod, t, x) ** 2 * grad) / s.gather(s.sqrt_alphas_cumprod, t, x)
        if self.config.clip_x0 is not None:
            x0 = x0.clamp(-self.config.clip_x0, self.config.clip_x0)
        mean, var = s.q_posterior(x, x0, t - 1)
        if level == 1:
            return mean
        if self.config.variance == "forward":
            var = s.gather(s.betas, t, x)
        return mean + self.config.noise_scale * var.sqrt() * rnd.randn_like(x, generator)

    def langevin_step_size(self, level: int) -> float:
        """α_t = ε σ̄_t² ᾱ_ℓ / σ̄_ℓ² = ε σ̄_t² / σ_ℓ² (NCSN's ε σ_t²/σ_ℓ² in VE units, times ᾱ_t)."""
        s, low = self.schedule, self.lowest_level
        return float(self.config.eps * s.sigmas_cumprod[level] ** 2 * s.alphas_cumprod[low] / s.sigmas_cumprod[low] ** 2)

    def langevin_step(self, x: Tensor, level: int, energy, generator=None) -> Tensor:
        """One annealed Langevin step at ``level``."""
        t = torch.full((x.shape[0],), level, dtype=torch.long, device=x.device)
        alpha = self.langevin_step_size(level)
        grad = energy_gradient(energy, x, t)
        return x - alpha * grad + self.config.noise_scale * (2 * alpha) ** 0.5 * rnd.randn_like(x, generator)

    def carry(self, x: Tensor, level: int) -> Tensor:
        """The level-(t+1) point as a level-t one with the same VE coordinates: x √(ᾱ_t/ᾱ_{t+1})."""
        abar = self.schedule.alphas_cumprod
        return x * float((abar[level] / abar[level + 1]).sqrt())

    # -- chains ---------------------------------------------------------------------------------
    def chain(self, x: Tensor, energy, stop: Tensor, generator=None) -> Tensor:
        """From level T down to each row's level ``stop``: rows stay where they reached theirs."""
        T, ancestral = self.schedule.num_levels, self.config.method == "ancestral"
        low = int(stop.min())
        view = (-1,) + (1,) * (x.dim() - 1)
        if ancestral:
            for level in range(T, low, -1):  # the step from ``level`` to ``level − 1``
                moved = self.ancestral_step(x, level, energy, generator)
                x = torch.where((stop < level).view(view), moved, x)
            return x
        for level in range(T, low - 1, -1):  # Langevin at ``level``, for the rows that stop there or below
            active = (stop <= level).view(view)
            if level < T and self.config.between_levels == "rescale":
                x = torch.where(active, self.carry(x, level), x)
            for _ in range(self.config.steps_per_level):
                x = torch.where(active, self.langevin_step(x, level, energy, generator), x)
        return x

    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        """The model's samples of each row's level-t marginal: the chain from the source to t
        (not used in training by `dsm`, which needs no negatives)."""
        level = batch.level.to(batch.positives.device)
        start = self.start(level.shape[0], generator=generator, device=batch.positives.device)
        if self.config.method == "annealed_langevin":
            level = level.clamp(min=self.lowest_level)  # annealed Langevin runs no untrained level
        return SampleRecord(self.chain(start.to(batch.positives.dtype), energy, level, generator).detach())

    @torch.no_grad()
    def generate(self, n: int, energy, generator=None) -> Tensor:
        device = next(energy.parameters()).device
        x = self.start(n, generator=generator, device=device)
        if self.config.method == "ancestral":
            x = self.chain(x, energy, torch.zeros(n, dtype=torch.long, device=device), generator)
            return self.finish(x, energy)
        low = self.lowest_level
        x = self.chain(x, energy, torch.full((n,), low, dtype=torch.long, device=device), generator)
        s = self.schedule
        if self.config.denoise_last:
            t = torch.full((n,), low, dtype=torch.long, device=device)
            x = x - float(s.sigmas_cumprod[low] ** 2) * energy_gradient(energy, x, t)
        return x / float(s.sqrt_alphas_cumprod[low])
