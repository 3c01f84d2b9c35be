"""The sampler contract: negatives for a training batch, and generation from the prior."""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from pydantic import Field
from torch import Tensor, nn

from ebmkit.compat import takes_negatives, warn_once
from ebmkit.compose import Declares, Need
from ebmkit.registry import Options
from ebmkit.samplers.denoise import energy_denoise
from ebmkit.samplers.sources import Source, SourceOptions
from ebmkit.types import LossOutput, SampleRecord, TrainingBatch, Update


class SamplerOptions(Options):
    """Options every sampler has: the final energy-based denoising step of generation."""

    denoise: bool = Field(False, description="one Tweedie step on the level-0 energy after generation")
    denoise_scale: float = Field(1.0, gt=0, description="step η = denoise_scale · σ̄_0² (1: Tweedie)")


def chain_move(end: Tensor, start: Tensor) -> Tensor:
    """How far chains moved: the mean over samples of ‖end − start‖ (a `SampleRecord` metric)."""
    return (end.detach() - start.detach()).flatten(1).norm(dim=1).mean()


def _level0_energy(energy: nn.Module, x: Tensor) -> Tensor:
    return energy(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))


class Sampler(nn.Module, Declares):
    """Produces negatives (`sample`) and generates from the prior (`generate`).

    `sample` returns a `SampleRecord`: the negatives and what the sampler's own objective needs
    later in the step. A learnable sampler has parameters (its own optimizer group, "sampler")
    and a `loss` on that record, unless it needs a 'generator_objective' (ebmkit.compose): then
    the divergence's `sampler_loss` trains it. `updates` adds steps of its own to the step's
    plan (DxMI's TD sweep on the energy's network); a sampler with `pretrainable` has a
    `pretrain_loss` on clean data, which ``train.pretrain_steps`` runs before step 1.
    """

    Options = SamplerOptions
    learnable: bool = False
    pretrainable: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _adapt_loss(cls)
        if "pretrain_loss" in cls.__dict__ and "pretrainable" not in cls.__dict__:
            cls.pretrainable = True  # defining the objective declares it

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        """The final Tweedie step moves by σ̄_0² ∇E: nothing on a schedule whose level 0 is noise-free."""
        return (Need("schedule", "level0_noise", instead="set sampler.denoise=false"),) if options.denoise else ()

    def __init__(self, options, *, schedule, shape: tuple[int, ...], energy: nn.Module | None = None,
                 data_energy: Callable | None = None):
        """``energy`` is offered so a sampler can read the parameterisation's constants;
        a sampler must not keep it (the energy belongs to the model, not the sampler).
        ``data_energy(energy, x)`` is the level-0 energy in data space (the divergence's)."""
        super().__init__()
        self.config, self.schedule, self.shape = options, schedule, tuple(shape)
        self.data_energy = data_energy or _level0_energy

    def sample(self, batch: TrainingBatch, energy: nn.Module, generator: torch.Generator | None = None) -> SampleRecord:
        raise NotImplementedError

    def generate(self, n: int, energy: nn.Module, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def loss(self, batch: TrainingBatch, record: SampleRecord, energy: nn.Module,
             generator: torch.Generator | None = None) -> LossOutput:
        """A learnable sampler's own objective on the record of this step's `sample`."""
        raise NotImplementedError(f"{type(self).__name__} is learnable but has no loss")

    def pretrain_loss(self, x0: Tensor, generator: torch.Generator | None = None) -> LossOutput:
        """The objective of pretraining on clean data (``pretrainable`` samplers)."""
        raise NotImplementedError(f"{type(self).__name__} has no pretraining objective")

    def optimizer_groups(self) -> list[dict]:
        """Parameter groups of a learnable sampler's optimizer; a group's ``lr_scale``
        multiplies the sampler lr (DxMI's log σ's learn 10-100× faster than the weights)."""
        return [{"params": list(self.parameters())}]

    def updates(self, batch: TrainingBatch, record: SampleRecord, energy: nn.Module,
                generator: torch.Generator | None = None) -> Iterator[Update]:
        """Updates of its own that the plan runs right after the energy's (each built when it is
        reached): a value function that shares the energy's network steps the "energy" group
        (DxMI's TD sweep). None by default."""
        if type(self).value_steps is not Sampler.value_steps:  # a plugin written against the old interface
            warn_once(type(self), "value_steps(energy, generator) is now updates(batch, record, energy, generator), "
                                   "which yields Update objects")
            steps = self.value_steps(energy, generator=generator)
            while (out := next(steps, None)) is not None:  # computed when reached, as the plan requires
                yield Update("energy", lambda out=out: out, "value loss ({sampler})")

    def value_steps(self, energy: nn.Module, generator: torch.Generator | None = None) -> Iterator[LossOutput]:
        """The interface `updates` replaced: kept so that a plugin overriding it keeps working."""
        return iter(())

    def record(self, batch: TrainingBatch, energy: nn.Module, generator: torch.Generator | None = None) -> SampleRecord:
        """`sample`'s record; a plugin whose `sample` still returns the negatives alone is wrapped."""
        out = self.sample(batch, energy, generator=generator)
        if isinstance(out, SampleRecord):
            return out
        warn_once(type(self), "sample() returns a SampleRecord(negatives, saved) instead of the negatives")
        return SampleRecord(out)

    def start(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """n chain starts from the sampler's source: ``sampler.source`` where its options declare
        one (`ebmkit.samplers.sources.SourceOptions`), else the schedule's prior."""
        source = self.config.source if isinstance(self.config, SourceOptions) else Source()
        return source.draw((n, *self.shape), self.schedule, generator=generator, device=device)

    # -- state that is not weights ---------------------------------------------------------
    def declare_state(self, name: str, value: Tensor) -> None:
        """Keep ``value`` across training steps as *state*, not weights (a replay buffer, running
        statistics of the chains): the trainer checkpoints it and resumes it bitwise, each rank
        keeping its own, and it is never EMA-averaged, broadcast between ranks or exported with
        the model. Declare it again to update it."""
        self.__dict__.setdefault("_declared_state", {})[name] = value  # a plain attribute: not a buffer

    @property
    def declared_state(self) -> dict[str, Tensor]:
        return self.__dict__.get("_declared_state", {})

    def _apply(self, fn, recurse=True):
        """``.to(device)`` and the like move declared state with the module (it is no buffer)."""
        out = super()._apply(fn, recurse)
        state = self.__dict__.get("_declared_state", {})
        for name, value in state.items():
            state[name] = fn(value)
        return out

    def finish(self, x: Tensor, energy: nn.Module) -> Tensor:
        """The end of `generate`: the optional denoising step on the level-0 energy."""
        if not self.config.denoise:
            return x
        return energy_denoise(x, lambda v: self.data_energy(energy, v), self.schedule, self.config.denoise_scale)


def _adapt_loss(cls: type) -> None:
    """A subclass's ``loss(batch, negatives, energy, generator)`` (the interface before the
    sample record) is wrapped to take the record."""
    old = cls.__dict__.get("loss")
    if old is None or not takes_negatives(old):
        return

    def loss(self, batch, record, energy, generator=None):
        warn_once(cls, "loss(batch, negatives, energy, generator) takes the SampleRecord instead of the negatives")
        return old(self, batch, record.negatives, energy, generator=generator)

    cls.loss = loss
