"""Langevin chains on the data energy whose temperature follows a schedule ε(t) (`ebmkit.temperatures`):
Energy Matching's negatives and generation (specs/energy_matching.md §3.2, §4; official code
utils_cifar_imagenet.py:96-155 and fid_cifar_heun_1gpu.py:82-126).

Training: K explicit Euler–Maruyama steps of size dt at the times t_k = k·dt, k = 0..K−1,

    x ← x − dt·∇ₓE(x) + √(2 ε(t_k) dt) ξ,   ξ ~ N(0, I),

from the source, from the positives, or half and half (EM's ``split_negative``: the first B/2 chains
start at x⁺[:B/2], the rest from the source). With ``same_temperature`` false the data-started
chains run at ε's final value from the first step (EM's ``at_data`` branch). The chain's last point
is clamped to a box where ``clamp`` is set; no per-step clamp, no Metropolis correction.

Generation integrates dx = −∇ₓE dt + √(2ε(t)) dW from the source over t ∈ [0, τ_s] with steps dt:
``heun`` is the Stratonovich Heun scheme of torchsde (heun.py:35-46), a predictor at t₀ and a
corrector at t₁ = t₀ + dt sharing one Brownian increment ΔW = √dt ξ,

    x̃ = x + f(x) dt + g(t₀) ΔW,   x ← x + ½ (f(x) + f(x̃)) dt + ½ (g(t₀) + g(t₁)) ΔW,

f = −∇ₓE, g(t) = √(2ε(t)): two energy-gradient evaluations per step; ``euler`` is the training step,
one. `generation_evaluations` is their number (EM CIFAR-10: τ_s = 3.25, dt = 0.01, Heun: 650).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator
from torch import Tensor

import ebmkit.random as rnd
import ebmkit.temperatures  # noqa: F401  (registers the temperature schedules)
from ebmkit.registry import SAMPLERS, TEMPERATURES
from ebmkit.samplers.base import Sampler, SamplerOptions, chain_move
from ebmkit.samplers.sources import Box, SourceOptions
from ebmkit.types import SampleRecord, TrainingBatch


@SAMPLERS.register("tempered_langevin")
class TemperedLangevinSampler(Sampler):
    """Langevin on E(x) with a temperature schedule ε(t), from source, data or both (Energy Matching)."""

    needs_schedule = False  # one energy, at level 0
    capabilities = {"level0_negatives": "negatives of the level-0 (data) energy for a contrastive term, from chains "
                                        "that may start at the batch's positives"}

    class Options(SamplerOptions, SourceOptions):
        n_steps: int = Field(200, ge=1, description="K, Euler–Maruyama steps per training chain (EM: 200)")
        dt: float = Field(0.01, gt=0, description="the step, in chain time (EM: 0.01)")
        temperature: dict[str, Any] = Field(
            default_factory=lambda: {"name": "ramp", "epsilon_max": 0.01, "cutoff": 1.0},
            description="ε(t) (ebmkit.temperatures): ramp with epsilon_max and cutoff τ* (EM CIFAR-10: 0.01, 1.0)")
        init: Literal["source", "data", "split"] = Field(
            "split", description="where training chains start: the source, the positives, or the first half at "
                                 "the positives and the rest at the source (EM's split_negative)")
        same_temperature: bool = Field(True, description="data-started chains follow ε(t) too (EM's "
                                                         "same_temperature_scheduler); false: ε's final value throughout")
        clamp: Optional[Box] = Field(None, description="[low, high]: clamp the chain's last point "
                                                                       "(EM images: [−1, 1]); null: none")
        integrator: Literal["heun", "euler"] = Field("heun", description="generation's scheme (EM: torchsde heun)")
        generate_time: float = Field(3.25, gt=0, description="τ_s, generation's end time (EM CIFAR-10: 3.25)")
        generate_dt: Optional[float] = Field(None, gt=0, description="generation's step; null: dt")

        @field_validator("temperature", mode="before")
        @classmethod
        def _known_temperature(cls, spec):
            return TEMPERATURES.validate(spec)

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        # chains from the source alone are independent of the training batch
        return frozenset({"level0_negatives"} | ({"fresh_samples"} if options.init == "source" else set()))

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        self.temperature = TEMPERATURES.build(options.temperature)

    @property
    def generation_steps(self) -> int:
        return round(self.config.generate_time / (self.config.generate_dt or self.config.dt))

    @property
    def generation_evaluations(self) -> int:
        """∇ₓE evaluations of one `generate`: two per Heun step, one per Euler step (NFE)."""
        return self.generation_steps * (2 if self.config.integrator == "heun" else 1)

    def drift(self, x: Tensor, energy) -> Tensor:
        """f(x) = −∇ₓE(x) at level 0, without a graph."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.data_energy(energy, x).sum(), x)
        return -grad

    def _clamped(self, x: Tensor) -> Tensor:
        return x if self.config.clamp is None else x.clamp(*self.config.clamp)

    # -- training ------------------------------------------------------------------------------------
    def starts(self, positives: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        """(x⁻₀, which chains start at data) for ``init``; the source is drawn for the chains that use it."""
        n, c = positives.shape[0], self.config
        at_data = n if c.init == "data" else (n // 2 if c.init == "split" else 0)
        parts = [positives[:at_data].detach()]
        if at_data < n:
            parts.append(self.start(n - at_data, generator, positives.device).to(positives.dtype))
        from_data = torch.arange(n, device=positives.device) < at_data
        return torch.cat(parts), from_data

    def chain(self, x: Tensor, from_data: Tensor, energy, generator=None) -> Tensor:
        """K Euler–Maruyama steps at t_k = k·dt (utils_cifar_imagenet.py:96-155); no graph is kept."""
        c = self.config
        view = (-1, *[1] * (x.dim() - 1))
        x = x.detach()
        for k in range(c.n_steps):
            eps = self.temperature(k * c.dt)
            eps_data = eps if c.same_temperature else self.temperature.final
            scale = torch.where(from_data, math.sqrt(2 * eps_data * c.dt), math.sqrt(2 * eps * c.dt)).to(x.dtype)
            noise = rnd.randn_like(x, generator)
            x = (x + c.dt * self.drift(x, energy) + scale.view(view) * noise).detach()
        return self._clamped(x)

    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        x0, from_data = self.starts(batch.positives, generator)
        negatives = self.chain(x0, from_data, energy, generator)
        return SampleRecord(negatives, metrics={"chain_move": chain_move(negatives, x0)})

    # -- generation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, energy, generator=None) -> Tensor:
        """From the source, ``generation_steps`` steps of ``integrator`` to τ_s; clamped at the end."""
        c = self.config
        dt = c.generate_dt or c.dt
        device = next(energy.parameters()).device
        x = self.start(n, generator, device)
        for k in range(self.generation_steps):
            g0, g1 = math.sqrt(2 * self.temperature(k * dt)), math.sqrt(2 * self.temperature((k + 1) * dt))
            dw = math.sqrt(dt) * rnd.randn_like(x, generator)
            f0 = self.drift(x, energy)
            if c.integrator == "euler":
                x = x + f0 * dt + g0 * dw
                continue
            predicted = x + f0 * dt + g0 * dw
            x = x + 0.5 * (f0 + self.drift(predicted, energy)) * dt + 0.5 * (g0 + g1) * dw
        return self.finish(self._clamped(x), energy)
