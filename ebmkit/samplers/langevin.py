"""Conditional Langevin on the recovery likelihood (DRL §4; CDRL's refinement stage).

For level t and noisy point x̃ = x_{t+1}, in y-space (y = a_{t+1} x_t) the target is

    log p(y | x̃) = −E(y, t) − r_t ‖y − x̃‖² / (2σ²_{t+1}) + const

and K unadjusted steps of size s_t² (s_t² = b² c_t σ²_{t+1}) are

    y ← y − ½ s_t² ∇_y E(y, t) − (s_t² / (2σ²_{t+1})) r_t (y − x̃) + λ s_t ξ,   ξ ~ N(0, I).

λ < 1 (DRL's evaluation uses 0.99) samples a slightly colder conditional.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.registry import SAMPLERS
from ebmkit.samplers.base import Sampler, SamplerOptions, chain_move
from ebmkit.types import SampleRecord, TrainingBatch
from ebmkit.schedules.base import StepCapOptions


@SAMPLERS.register("langevin")
class LangevinSampler(Sampler):
    """Recovery-likelihood Langevin: K steps per level from the noisier sample (DRL)."""

    class Options(SamplerOptions, StepCapOptions):
        n_steps: int = Field(30, ge=1, description="K, Langevin steps per level")
        generate_n_steps: Optional[int] = Field(
            None, ge=1, description="K when generating; null: n_steps (CDRL Table 3 samples with fewer steps than it trains with)"
        )
        b_square: Optional[float] = Field(
            None, gt=0, description="b² of s_t² = b² c_t σ²_{t+1}; null: the energy's own s_t² (DRL's f = g/s_t²)"
        )
        c_rule: Literal["sigma_ratio", "constant"] = "sigma_ratio"
        noise_scale: float = Field(1.0, ge=0, description="λ while training")
        generate_noise_scale: float = Field(0.99, ge=0, description="λ when generating")

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"recovery_negatives"})

    @classmethod
    def fit(cls, options, data):
        return options.fitted(data)  # the cap of its own step (b_square set); the energy's step is capped there

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        if options.b_square is None:
            own = Need("energy", "step_sizes", instead="set sampler.b_square (e.g. 2e-4) for a step of its own")
        else:
            own = Need("schedule", "level0_noise")
        return super().needs(options) + (own,)

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        s = schedule
        if options.b_square is not None:
            step = s.langevin_step_sizes(options.b_square, options.c_rule, options.cap_scale, options.step_cap)
        elif getattr(energy, "step_sizes", None) is not None:
            step = energy.step_sizes.double().cpu()  # one s_t² for the parameterisation and the chain
        else:
            name = type(energy).__name__ if energy is not None else "none"
            raise ValueError(
                f"langevin: the energy ({name}) defines no step sizes; set sampler.b_square (e.g. 2e-4)"
            )
        self.register_buffer("step_sizes", step.float(), persistent=False)  # s_t²
        self.register_buffer("tether", (step * s.recovery_tether / (2 * s.betas[1:])).float(), persistent=False)
        self.register_buffer("recovery_scale", s.recovery_scale.float(), persistent=False)

    def refine(self, y: Tensor, x_next: Tensor, t: Tensor, energy, noise_scale: float, generator=None,
               n_steps: int | None = None) -> Tensor:
        """K Langevin steps (``n_steps``, default the training K) on log p(y | x_{t+1}) from y; no graph is kept."""
        view = (-1,) + (1,) * (y.dim() - 1)
        s2 = self.step_sizes[t].view(view)
        k = self.tether[t].view(view)
        std = noise_scale * s2.sqrt()
        y = y.detach()
        for _ in range(self.config.n_steps if n_steps is None else n_steps):
            with torch.enable_grad():
                y.requires_grad_(True)
                (grad,) = torch.autograd.grad(energy(y, t).sum(), y)
            noise = rnd.randn_like(y, generator)
            y = (y.detach() - 0.5 * s2 * grad - k * (y.detach() - x_next) + std * noise).detach()
        return y

    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        # The chain starts at x̃ itself, where the tether is centred (DRL §4 step 1).
        negatives = self.refine(batch.condition, batch.condition, batch.level, energy, self.config.noise_scale,
                                generator)
        return SampleRecord(negatives, metrics={"chain_move": chain_move(negatives, batch.condition)})

    @torch.no_grad()
    def generate(self, n: int, energy, generator=None, propose=None) -> Tensor:
        """x_T ~ N(0, I), then for t = T−1..0: y = K steps from propose(x_{t+1}, t) (default
        x_{t+1} itself), x_t = y / a_{t+1}. A cooperative sampler passes its initializer."""
        device = self.step_sizes.device
        # passed only when set, so that a subclass whose refine() predates the option still works
        steps = {} if self.config.generate_n_steps is None else {"n_steps": self.config.generate_n_steps}
        x = self.schedule.prior_sample((n, *self.shape), generator=generator, device=device)
        for level in reversed(range(self.schedule.num_levels)):
            t = torch.full((n,), level, device=device, dtype=torch.long)
            y0 = x if propose is None else propose(x, t, generator)
            y = self.refine(y0, x, t, energy, self.config.generate_noise_scale, generator, **steps)
            x = y / self.recovery_scale[level]
        return x if propose is not None else self.finish(x, energy)
