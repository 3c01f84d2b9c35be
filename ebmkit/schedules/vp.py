"""Discretised VP-SDE as in DDGAN / DDAEBM (Song et al. 2021, App. B; DDAEBM Eq. 47-48).

ᾱ(s) = exp(−β_min s − ½(β_max − β_min) s²). Times s_k, k = 0..T, are either equidistant,
s_k = (k/T)(1 − ε) + ε, or DRL-like (first T−1 steps on the low-noise half, then a jump to 1).
DDAEBM's convention: β_0 = 1 − ᾱ(s_0) is a real zeroth step (level 0 keeps a little noise),
β_k = min(1 − ᾱ(s_k)/ᾱ(s_{k−1}), beta_clip), and ᾱ_k = Π_{j ≤ k} (1 − β_j).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from ebmkit.registry import SCHEDULES
from ebmkit.schedules.base import NoiseSchedule, ScheduleOptions


@SCHEDULES.register("vp")
class VPSchedule(NoiseSchedule):
    """VP-SDE discretised at T+1 times (DDGAN / DDAEBM; T = 4 in both papers)."""

    class Options(ScheduleOptions):
        untethered_top: bool = False
        num_levels: int = Field(4, ge=1)
        beta_min: float = Field(0.1, gt=0)
        beta_max: float = Field(20.0, gt=0)
        spacing: Literal["uniform", "drl"] = "uniform"
        eps: float = Field(1e-3, ge=0, lt=1, description="smallest time of the uniform spacing")
        beta_clip: Optional[float] = Field(0.999, gt=0, le=1, description="upper clamp of β_k; null for none")

        @model_validator(mode="after")
        def _check(self):
            if self.beta_max < self.beta_min:
                raise ValueError("beta_max must be at least beta_min")
            if self.spacing == "drl" and self.num_levels < 2:
                raise ValueError("spacing 'drl' needs num_levels ≥ 2")
            return self

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return super().provides(options) | {"diffusion_times"}

    def times(self) -> torch.Tensor:
        c = self.config
        T = c.num_levels
        k = torch.arange(T + 1, dtype=torch.float64)
        if c.spacing == "uniform":
            return k / T * (1 - c.eps) + c.eps
        s = k * (1000 // (2 * (T - 1))) / 999
        s[T] = 1.0
        return s

    def continuous_alphas_cumprod(self, s: torch.Tensor) -> torch.Tensor:
        c = self.config
        return torch.exp(-c.beta_min * s - 0.5 * (c.beta_max - c.beta_min) * s**2)

    def make_alphas_cumprod(self):
        abar_c = self.continuous_alphas_cumprod(self.times())
        betas = torch.cat([1 - abar_c[:1], 1 - abar_c[1:] / abar_c[:-1]])
        if self.config.beta_clip is not None:
            betas[1:] = betas[1:].clamp(max=self.config.beta_clip)
        abar = torch.cumprod(1 - betas, 0)
        if abar[0] >= 1:  # s_0 = 0: level 0 is exactly data; keep ᾱ strictly positive and ≤ 1
            abar[0] = 1.0
        return abar
