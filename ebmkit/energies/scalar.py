"""Energy parameterisations: the plain scalar head and DRL's per-level scaling."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from ebmkit.compose import Need
from ebmkit.energies.base import Energy
from ebmkit.registry import ENERGIES, Options
from ebmkit.schedules.base import StepCapOptions


@ENERGIES.register("scalar")
class ScalarEnergy(Energy):
    """E(x, t) = network(x, t) + ½ c‖x‖²: the network's scalar output is the energy, plus an
    optional Gaussian base measure N(0, I/c).

    A contrastive loss only shapes the energy where data or negatives go; elsewhere it is the
    network's extrapolation, which may dip below the data's energy. The base term makes the
    far field rise whatever the network does there; near the data the network absorbs it.
    """

    needs_schedule = False  # one level (t = 0) is a level like any other

    class Options(Options):
        base_precision: float = Field(0.0, ge=0, description="c of the added ½c‖x‖² (0: the network alone)")

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"level_T"})  # the network embeds any level, the prior's T included

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        energy = self.network(x, t)
        if self.config.base_precision:
            energy = energy + 0.5 * self.config.base_precision * x.flatten(1).pow(2).sum(1)
        return energy


@ENERGIES.register("drl")
class DRLScaledEnergy(Energy):
    """DRL's f = g/s_t²: E(y, t) = −g_θ(y, t) / s_t², s_t² the level's Langevin step (DRL §3).

    With this scaling the Langevin drift on the network is ½∇g at every level, so one network
    with O(1) outputs serves levels whose log-densities have curvature ∝ 1/σ².
    """

    class Options(StepCapOptions):
        b_square: float = Field(2e-4, gt=0, description="b² of s_t² = b² c_t σ²_{t+1}")
        c_rule: Literal["sigma_ratio", "constant"] = "sigma_ratio"

    @classmethod
    def fit(cls, options, data):
        return options.fitted(data)

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        # scaled by s_t², t = 0..T−1: a pair's lower level, never the prior's T
        return frozenset({"step_sizes"})

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return (Need("schedule", "level0_noise"),)

    def __init__(self, options, *, network, schedule):
        super().__init__(options, network=network, schedule=schedule)
        self.register_buffer(
            "step_sizes", schedule.langevin_step_sizes(options.b_square, options.c_rule, options.cap_scale, options.step_cap).float(),
            persistent=False,
        )

    def forward(self, y: Tensor, t: Tensor) -> Tensor:
        return -self.network(y, t) / self.step_sizes[t]

    def output_scale(self, t: Tensor) -> Tensor:
        return self.step_sizes[t]
