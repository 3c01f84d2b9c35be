"""DRL's schedule (Gao et al. 2021, code `get_sigma_schedule`): DDPM's linear β sub-sampled.

idx = [0, d, 2d, …, (T−1)d, 999] with d = ⌊1000 / (2(T−1))⌋, and ᾱ_i = Π_{k ≤ idx[i]} (1 − β_k).
Levels 0..T−1 cover the first half of DDPM's chain; the last step jumps to k = 999. Level 0
keeps a little noise (σ̄_0 = 0.01): it is data after DDPM's first step.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ebmkit.registry import SCHEDULES
from ebmkit.schedules.base import NoiseSchedule, ScheduleOptions


@SCHEDULES.register("drl")
class DRLSchedule(NoiseSchedule):
    """DRL: DDPM linear β on 1000 steps, sub-sampled at T+1 indices (T = 6 in the paper)."""

    class Options(ScheduleOptions):
        num_levels: int = Field(6, ge=2, le=501, description="T; the index formula needs 2 ≤ T ≤ 501")
        beta_start: float = Field(1e-4, gt=0, lt=1)
        beta_end: float = Field(0.02, gt=0, lt=1)
        num_ddpm_steps: int = Field(1000, ge=4)

    def make_alphas_cumprod(self):
        c = self.config
        n, T = c.num_ddpm_steps, c.num_levels
        d = n // (2 * (T - 1))
        if d < 1:
            raise ValueError(f"drl schedule: T={T} leaves no room between indices for {n} DDPM steps")
        idx = torch.tensor([i * d for i in range(T)] + [n - 1])
        betas = torch.linspace(c.beta_start, c.beta_end, n, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0)[idx]
