"""The sampler contract: negatives for a training batch, and generation from the prior."""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from pydantic import Field
from torch import Tensor, nn

from ebmkit.compose import Declares, Need
from ebmkit.registry import Options
from ebmkit.samplers.denoise import energy_denoise
from ebmkit.types import LossOutput, TrainingBatch


class SamplerOptions(Options):
    """Options every sampler has: the final energy-based denoising step of generation."""

    denoise: bool = Field(False, description="one Tweedie step on the level-0 energy after generation")
    denoise_scale: float = Field(1.0, gt=0, description="step η = denoise_scale · σ̄_0² (1: Tweedie)")


def _level0_energy(energy: nn.Module, x: Tensor) -> Tensor:
    return energy(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))


class Sampler(nn.Module, Declares):
    """Produces negatives (`sample`) and generates from the prior (`generate`).

    A learnable sampler has parameters (its own optimizer group) and a `loss`, unless it
    needs a 'generator_objective' (ebmkit.compose): then the divergence's `sampler_loss` trains it.
    """

    Options = SamplerOptions
    learnable: bool = False

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

    def sample(self, batch: TrainingBatch, energy: nn.Module, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def generate(self, n: int, energy: nn.Module, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def optimizer_groups(self) -> list[dict]:
        """Parameter groups of a learnable sampler's optimizer; a group's ``lr_scale``
        multiplies the sampler lr (DxMI's log σ's learn 10-100× faster than the weights)."""
        return [{"params": list(self.parameters())}]

    def value_steps(self, energy: nn.Module, generator: torch.Generator | None = None) -> Iterator[LossOutput]:
        """Losses the trainer steps, one by one, on the energy's optimizer right after the energy
        step: a value function that shares the energy's network (DxMI's TD sweep). None by default."""
        return iter(())

    def finish(self, x: Tensor, energy: nn.Module) -> Tensor:
        """The end of `generate`: the optional denoising step on the level-0 energy."""
        if not self.config.denoise:
            return x
        return energy_denoise(x, lambda v: self.data_energy(energy, v), self.schedule, self.config.denoise_scale)
