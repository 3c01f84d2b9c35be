"""CDRL's truncated-cosine log-SNR schedule (Zhu et al. 2024; the VDM / distillation form).

λ(u) = −2 ln tan(A u + B), B = arctan(e^{−λ_max/2}), A = arctan(e^{−λ_min/2}) − B, so that
λ(0) = λ_max and λ(1) = λ_min; ᾱ_i = sigmoid(λ(i/T)).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

from ebmkit.registry import SCHEDULES
from ebmkit.schedules.base import NoiseSchedule, ScheduleOptions


@SCHEDULES.register("cosine_logsnr")
class CosineLogSNRSchedule(NoiseSchedule):
    """CDRL: ᾱ_i = sigmoid(λ(i/T)), truncated-cosine log-SNR between λ_max and λ_min."""

    class Options(ScheduleOptions):
        num_levels: int = Field(6, ge=1)
        logsnr_min: float = -5.1
        logsnr_max: float = 9.8

        @model_validator(mode="after")
        def _ordered(self):
            if not self.logsnr_min < self.logsnr_max:
                raise ValueError("logsnr_min must be below logsnr_max")
            return self

    def make_alphas_cumprod(self):
        c = self.config
        b = math.atan(math.exp(-c.logsnr_max / 2))
        a = math.atan(math.exp(-c.logsnr_min / 2)) - b
        u = torch.arange(c.num_levels + 1, dtype=torch.float64) / c.num_levels
        log_snr = -2 * torch.log(torch.tan(a * u + b))
        return torch.sigmoid(log_snr)
