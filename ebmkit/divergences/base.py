"""The divergence contract: what the energy (and a learnable sampler) minimise."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmkit.compose import Declares
from ebmkit.types import LossOutput, TrainingBatch


class Divergence(Declares):
    """What the energy minimises (`energy_loss`) and, where it provides a 'generator_objective',
    what the sampler's generator minimises (`sampler_loss`)."""

    @property
    def differentiates_twice(self) -> bool:
        """Whether the energy loss backpropagates through a gradient of the energy (a gradient
        penalty), which a torch.compile'd network cannot do."""
        return False

    def __init__(self, options, *, schedule):
        self.config, self.schedule = options, schedule

    def training_batch(self, x0: Tensor, generator: torch.Generator | None = None) -> TrainingBatch:
        """Turn clean data into the positives, conditions and levels of one step."""
        raise NotImplementedError

    def energy_loss(self, batch: TrainingBatch, negatives: Tensor, energy) -> LossOutput:
        raise NotImplementedError

    def data_energy(self, energy, x: Tensor) -> Tensor:
        """Energy of clean data under the model: the level-0 energy, in data space."""
        return energy(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))

    def sampler_loss(self, batch: TrainingBatch, negatives: Tensor, energy, sampler,
                     generator: torch.Generator | None = None) -> LossOutput:
        """The learnable sampler's objective; by default the sampler's own (CDRL's initializer)."""
        return sampler.loss(batch, negatives, energy, generator=generator)
