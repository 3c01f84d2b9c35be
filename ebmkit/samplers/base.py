"""The sampler contract: negatives for a training batch, and generation from the prior."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class TrainingBatch:
    """What one training step works on, for every recipe.

    positives: samples of the variable the energy at ``level`` models (for recovery
    likelihood, y = a_{t+1} x_t); condition: what the conditional is given (x_{t+1});
    level: t per sample; data: the clean batch it came from.
    """

    positives: Tensor
    condition: Tensor
    level: Tensor
    data: Tensor


class Sampler(nn.Module):
    """Produces negatives (`sample`) and generates from the prior (`generate`).

    A learnable sampler has parameters (its own optimizer group) and a `loss`.
    """

    learnable: bool = False

    def __init__(self, options, *, schedule, shape: tuple[int, ...], energy: nn.Module | None = None):
        """``energy`` is offered so a sampler can read the parameterisation's constants;
        a sampler must not keep it (the energy belongs to the model, not the sampler)."""
        super().__init__()
        self.config, self.schedule, self.shape = options, schedule, tuple(shape)

    def sample(self, batch: TrainingBatch, energy: nn.Module, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def generate(self, n: int, energy: nn.Module, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError
