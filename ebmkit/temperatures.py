"""Temperature schedules ε(t) of a tempered Langevin chain, t the chain's time since it left the source
(specs/energy_matching.md §3.2, §4):

    x ← x − dt·∇ₓE(x) + √(2 ε(t) dt) ξ,   ξ ~ N(0, I),

whose law at a fixed ε is exp(−E/ε). ``ramp`` is Energy Matching's (``plot_epsilon``,
utils_cifar_imagenet.py:183-205): noiseless gradient flow up to τ*, a linear ramp to ε_max at t = 1,
ε_max afterwards,

    ε(t) = 0                       t < τ*
           ε_max (t − τ*)/(1 − τ*)  τ* ≤ t < 1
           ε_max                    t ≥ 1,

so with τ* = 1 (the image runs) the chain is the deterministic flow on t ∈ [0, 1), then Langevin at
ε_max. ``constant`` is ε(t) = ε, plain Langevin at one temperature.

A temperature schedule is a registered component (``ebmkit.registry.TEMPERATURES``; ``ebmkit list
temperatures``), named by a sampler's ``temperature`` option (`tempered_langevin`).
"""

from __future__ import annotations

from pydantic import Field

from ebmkit.registry import TEMPERATURES, Options


class Temperature:
    """ε(t) ≥ 0 for t ≥ 0 (``temperature(t)``), and ``final``, its value once the chain has settled."""

    Options = None

    def __init__(self, options=None):
        self.config = options

    def __call__(self, t: float) -> float:
        raise NotImplementedError

    @property
    def final(self) -> float:
        raise NotImplementedError


@TEMPERATURES.register("ramp")
class RampTemperature(Temperature):
    """Energy Matching's ε(t): 0 before τ*, a linear ramp to ε_max at t = 1, ε_max after."""

    class Options(Options):
        epsilon_max: float = Field(0.01, ge=0, description="ε_max, the temperature of the settled chain (EM CIFAR-10 "
                                                           "and ImageNet: 0.01; 2D: 0.15)")
        cutoff: float = Field(1.0, ge=0, le=1, description="τ*, where the ramp starts (EM images: 1.0, the ramp is "
                                                           "empty; 2D: 0.8)")

    def __call__(self, t: float) -> float:
        c = self.config
        if t >= 1.0:
            return c.epsilon_max
        if t < c.cutoff:
            return 0.0
        return c.epsilon_max * (t - c.cutoff) / (1.0 - c.cutoff)

    @property
    def final(self) -> float:
        return self.config.epsilon_max


@TEMPERATURES.register("constant")
class ConstantTemperature(Temperature):
    """ε(t) = ε at every t: unadjusted Langevin at one temperature."""

    class Options(Options):
        epsilon: float = Field(1.0, ge=0, description="ε, the temperature throughout")

    def __call__(self, t: float) -> float:
        return self.config.epsilon

    @property
    def final(self) -> float:
        return self.config.epsilon
