"""The sampler contract: negatives for a training batch, and generation from the prior."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmkit.types import TrainingBatch


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
