"""Tweedie's formula at level 0: the posterior mean of clean data given x_0 (CDRL §6 step 4).

    E[x | x_0] = (x_0 + σ̄_0² ∇ log p(x_0)) / √ᾱ_0,   log p(x_0) = −E(m_0 x_0, 0) + const,

usable by any sampler whose energy models level 0 in recovery (y) space. CDRL's code scales the
score by 2 (it divides g by half the Langevin s²); ``score_scale`` keeps that choice explicit.
"""

from __future__ import annotations

import torch
from torch import Tensor


def tweedie_denoise(x0: Tensor, energy, schedule, score_scale: float = 1.0) -> Tensor:
    m = float(schedule.recovery_scale[0])
    t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    with torch.enable_grad():
        x = x0.detach().requires_grad_(True)
        (grad_e,) = torch.autograd.grad(energy(m * x, t).sum(), x)
    sigma2, scale = float(1 - schedule.alphas_cumprod[0]), float(schedule.sqrt_alphas_cumprod[0])
    return (x0 - score_scale * sigma2 * grad_e) / scale
