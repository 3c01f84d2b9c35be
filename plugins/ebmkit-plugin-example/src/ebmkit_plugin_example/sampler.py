"""`annealed_langevin`: ebmkit's recovery-likelihood Langevin with a cooling noise scale.

Step k of K uses noise λ_k = λ · (1 − (1 − r) k / (K − 1)), falling linearly from λ to r·λ, so
each chain explores first and settles at the end. r = 1 is exactly the built-in `langevin`.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.samplers import LangevinSampler


class AnnealedLangevin(LangevinSampler):
    """Recovery-likelihood Langevin whose noise scale cools linearly over the K steps."""

    class Options(LangevinSampler.Options):
        final_noise_ratio: float = Field(0.5, ge=0, le=1, description="r: the last step's noise is r·λ")

    def refine(self, y: Tensor, x_next: Tensor, t: Tensor, energy, noise_scale: float, generator=None,
               n_steps: int | None = None) -> Tensor:
        view = (-1,) + (1,) * (y.dim() - 1)
        s2, k = self.step_sizes[t].view(view), self.tether[t].view(view)
        K, r = self.config.n_steps if n_steps is None else n_steps, self.config.final_noise_ratio
        y = y.detach()
        for step in range(K):
            scale = noise_scale * (1 - (1 - r) * step / max(K - 1, 1))
            with torch.enable_grad():
                y.requires_grad_(True)
                (grad,) = torch.autograd.grad(energy(y, t).sum(), y)
            noise = rnd.randn_like(y, generator)  # through ebmkit.random: per-sample seeds and ranks work
            y = (y.detach() - 0.5 * s2 * grad - k * (y.detach() - x_next) + scale * s2.sqrt() * noise).detach()
        return y
