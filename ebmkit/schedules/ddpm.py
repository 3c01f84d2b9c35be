"""DDPM's linear (Ho et al. 2020) and cosine (Nichol & Dhariwal 2021) β schedules.

Level 0 is exactly clean data (ᾱ_0 = 1).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from ebmkit.registry import SCHEDULES
from ebmkit.schedules.base import NoiseSchedule, ScheduleOptions


@SCHEDULES.register("ddpm_linear")
class DDPMLinearSchedule(NoiseSchedule):
    """DDPM linear β_1..β_T = linspace(beta_start, beta_end, T)."""

    class Options(ScheduleOptions):
        num_levels: int = Field(1000, ge=1)
        beta_start: float = Field(1e-4, gt=0, lt=1)
        beta_end: float = Field(0.02, gt=0, lt=1)

    def make_alphas_cumprod(self):
        c = self.config
        betas = torch.linspace(c.beta_start, c.beta_end, c.num_levels, dtype=torch.float64)
        return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


@SCHEDULES.register("ddpm_cosine")
class DDPMCosineSchedule(NoiseSchedule):
    """Improved-DDPM cosine schedule ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)."""

    class Options(ScheduleOptions):
        num_levels: int = Field(1000, ge=1)
        s: float = Field(0.008, ge=0)
        max_beta: float = Field(0.999, gt=0, le=1)

    def make_alphas_cumprod(self):
        c = self.config
        t = torch.arange(c.num_levels + 1, dtype=torch.float64) / c.num_levels
        f = torch.cos((t + c.s) / (1 + c.s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=c.max_beta)  # clipped as in the paper
        return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
