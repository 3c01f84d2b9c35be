"""NCSN's variance-exploding noise levels as a VP table (specs/dsm.md §4).

NCSN perturbs x̃ = x + σ_i z with σ_i = exp(linspace(log σ_max, log σ_min, L)) (ncsnv2
models/__init__.py:4-17; σ_1 largest). x_VP = x̃/√(1 + σ²) has the VP marginal
√ᾱ x + σ̄ z with ᾱ = 1/(1 + σ²), σ̄² = σ²/(1 + σ²), so the table stored is

    ᾱ_0 = 1,   ᾱ_t = 1 / (1 + σ_{L+1−t}²),  t = 1..L   (σ_min at level 1, σ_max at level T = L)

and E_VP(x, t) = E_VE(x √(1 + σ²), i) up to a constant. Level T must be close to N(0, I):
σ_max ≥ √19 ≈ 4.36 (ᾱ_T ≤ 0.05); NCSNv2's CIFAR-10 σ_max = 50 gives ᾱ_T = 4.0e-4.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

from ebmkit.registry import SCHEDULES
from ebmkit.schedules.base import NoiseSchedule, ScheduleOptions

TOP_ALPHA_BAR = 0.05  # the most signal level T may keep


@SCHEDULES.register("ve_geometric")
class VEGeometricSchedule(NoiseSchedule):
    """NCSN's geometric σ_max → σ_min, L levels, stored as ᾱ_t = 1/(1 + σ²); level 0 is data."""

    class Options(ScheduleOptions):
        num_levels: int = Field(232, ge=2, description="L (NCSNv2 CIFAR-10: 232)")
        sigma_max: float = Field(50.0, gt=0, description="σ_1, the largest (NCSNv2 CIFAR-10: 50, data in [0, 1])")
        sigma_min: float = Field(0.01, gt=0, description="σ_L, the smallest (NCSNv2 CIFAR-10: 0.01)")

        @model_validator(mode="after")
        def _a_valid_range(self):
            if self.sigma_min >= self.sigma_max:
                raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
            if 1 / (1 + self.sigma_max**2) > TOP_ALPHA_BAR:
                raise ValueError(f"sigma_max {self.sigma_max} leaves level T with ᾱ_T = {1 / (1 + self.sigma_max**2):.3g} "
                                 f"of the signal; level T must be close to N(0, I): sigma_max ≥ "
                                 f"{math.sqrt(1 / TOP_ALPHA_BAR - 1):.2f}")
            return self

    def make_alphas_cumprod(self):
        c = self.config
        sigmas = torch.exp(torch.linspace(math.log(c.sigma_min), math.log(c.sigma_max), c.num_levels,
                                          dtype=torch.float64))  # levels 1..L, σ increasing
        return torch.cat([torch.ones(1, dtype=torch.float64), 1 / (1 + sigmas**2)])
