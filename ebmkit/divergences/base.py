"""The divergence contract: what the energy (and a learnable sampler) minimise, and the step's plan."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from ebmkit.compat import takes_negatives, warn_once
from ebmkit.compose import Declares
from ebmkit.types import LossOutput, SampleRecord, TrainingBatch, Update


def energy_metrics(e_pos: Tensor, e_neg: Tensor) -> dict[str, Tensor]:
    """What an energy loss logs of its energies: the mean E of the positives and of the negatives,
    and their gap E⁻ − E⁺, positive while the energy ranks data as more probable than its negatives."""
    e_pos, e_neg = e_pos.detach().mean(), e_neg.detach().mean()
    return {"e_pos": e_pos, "e_neg": e_neg, "e_gap": e_neg - e_pos}


class Divergence(Declares):
    """What the energy minimises (`energy_loss`) and, where it provides a 'generator_objective',
    what the sampler's generator minimises (`sampler_loss`); and `plan`, the ordered updates of
    one training step, which the trainer executes one by one.

    ``needs_negatives = False`` declares a method without negatives (score matching, NCE): the
    trainer then never calls the sampler during training, and the plan gets no record (it may
    be a property of the options: a phase that turns the contrastive term off needs none).
    ``data_batches = n`` draws n independent data batches per step: the first becomes the
    `TrainingBatch`, the others arrive clean in its ``more``.
    """

    needs_negatives: bool = True
    data_batches: int = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        old = cls.__dict__.get("sampler_loss")
        if old is not None and takes_negatives(old):  # the interface before the sample record

            def sampler_loss(self, batch, record, energy, sampler, generator=None):
                warn_once(cls, "sampler_loss(batch, negatives, energy, sampler, generator) takes the SampleRecord "
                                "instead of the negatives")
                return old(self, batch, record.negatives, energy, sampler, generator=generator)

            cls.sampler_loss = sampler_loss

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

    def sampler_loss(self, batch: TrainingBatch, record: SampleRecord, energy, sampler,
                     generator: torch.Generator | None = None) -> LossOutput:
        """The learnable sampler's objective; by default the sampler's own (CDRL's initializer)."""
        return sampler.loss(batch, record, energy, generator=generator)

    def plan(self, batch: TrainingBatch, record: SampleRecord | None, energy, sampler,
             generator: torch.Generator | None = None) -> Iterator[Update]:
        """The updates of one step, in order, each built when the trainer reaches it: the energy
        on this step's negatives (from the energy before the update); then the sampler's own
        updates (DxMI's TD sweep); then a learnable sampler on the same record, the energy frozen
        and read as just updated. A divergence with another step shape (several critic steps per
        generator step, no negatives) overrides this."""
        yield Update("energy", lambda: self.energy_loss(batch, record.negatives, energy), "energy loss ({divergence})",
                     loss_key="loss", grad_key="grad_norm")
        yield from sampler.updates(batch, record, energy, generator=generator)
        if sampler.learnable:
            yield Update("sampler", lambda: self.sampler_loss(batch, record, energy, sampler, generator=generator),
                         "sampler loss ({divergence} on {sampler})", frozen=(energy,), grad_key="sampler_grad_norm")
