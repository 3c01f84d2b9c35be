"""The energy-based denoising step at level 0 (Tweedie's formula; CDRL §6 step 4, DDAEBM §4.3).

Level 0 keeps a little noise, x_0 = √ᾱ_0 x + σ̄_0 ε, so the posterior mean of the clean point is

    E[x | x_0] = (x_0 + σ̄_0² ∇ log p(x_0)) / √ᾱ_0,   log p(x_0) = −E_data(x_0) + const,

where E_data is the level-0 energy seen in data space (the divergence knows how the level-0
EBM is parameterised: on x_0 itself for DDAEBM, on y = a_1 x_0 for recovery likelihood).
``scale`` multiplies the step η = scale · σ̄_0²: CDRL's code uses 2 (it divides g by half the
Langevin s²); DDAEBM's paper gives no value, 1 is Tweedie's.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def energy_denoise(x0: Tensor, data_energy: Callable[[Tensor], Tensor], schedule, scale: float = 1.0) -> Tensor:
    with torch.enable_grad():
        x = x0.detach().requires_grad_(True)
        (grad_e,) = torch.autograd.grad(data_energy(x).sum(), x)
    sigma2, sqrt_abar = float(1 - schedule.alphas_cumprod[0]), float(schedule.sqrt_alphas_cumprod[0])
    return (x0 - scale * sigma2 * grad_e) / sqrt_abar
