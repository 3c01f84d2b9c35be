"""Where a sampler's chains start: its declared source distribution.

A sampler whose chains start from noise of its own choosing (persistent CD's uniform noise,
Energy Matching's Gaussian source) takes `SourceOptions` among its options and draws its starts
with `Sampler.start`. ``prior`` is the schedule's prior at its top level (N(0, I) for every
built-in schedule, and without a schedule). Draws are in the model's units: with standardised
data (`ebmkit.data.transform`) N(0, I) matches the data's overall scale.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.registry import Options



def _ordered(box: tuple[float, float]) -> tuple[float, float]:
    if box[1] <= box[0]:
        raise ValueError(f"high ({box[1]}) must exceed low ({box[0]})")
    return box


Box = Annotated[tuple[float, float], AfterValidator(_ordered)]
"""[low, high] with low < high: a chain's clamp (`replay`, `tempered_langevin`)."""

class Source(Options):
    """One source distribution: ``prior``, ``normal`` N(0, std² I) or ``uniform`` U[low, high)^d."""

    name: Literal["prior", "normal", "uniform"] = "prior"
    std: float = Field(1.0, gt=0, description="normal: the standard deviation")
    low: float = Field(-1.0, description="uniform: the lower end")
    high: float = Field(1.0, description="uniform: the upper end")

    @model_validator(mode="after")
    def _ordered(self) -> "Source":
        if self.high <= self.low:
            raise ValueError(f"source: high ({self.high}) must exceed low ({self.low})")
        return self

    def draw(self, shape, schedule=None, generator=None, device=None) -> Tensor:
        """``shape`` draws (batch first), through `ebmkit.random` so per-sample seeds and data
        parallelism give the same starts whatever the batching."""
        if self.name == "prior":
            if schedule is not None:
                return schedule.prior_sample(shape, generator=generator, device=device)
            return rnd.randn(shape, generator=generator, device=device)
        if self.name == "normal":
            return self.std * rnd.randn(shape, generator=generator, device=device)
        return self.low + (self.high - self.low) * rnd.rand(shape, generator=generator, device=device)


class SourceOptions(Options):
    """The options of a sampler that starts its chains from a declared source."""

    source: Source = Field(default_factory=Source, description="where chains start (ebmkit.samplers.sources)")
