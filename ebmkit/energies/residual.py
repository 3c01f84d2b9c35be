"""DDAEBM's image energy (Geng et al. 2024, Eq. 24): a negative norm between input and output.

    E(x, t) = ½ ‖x − U_θ(x, t)‖²     (the paper's f = −E; Du et al. 2023's parameterisation)

U has the data's shape. With U's last layer at zero (``zero_init``), E starts as ½‖x‖², the standard normal's
energy, so the untrained model is already the forward process's terminal density.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from ebmkit.energies.base import Energy
from ebmkit.networks.init import zero_output_layer
from ebmkit.registry import ENERGIES, Options


@ENERGIES.register("residual_norm")
class ResidualNormEnergy(Energy):
    """E = ½‖x − U(x, t)‖², U a network with the data's shape."""

    network_output = "data"

    class Options(Options):
        zero_init: bool = Field(True, description="U's last layer starts at zero: E = ½‖x‖² (DDAEBM's init_scale 0)")

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"level_T"})  # the network embeds any level, the prior's T included

    def __init__(self, options, *, network, schedule):
        super().__init__(options, network=network, schedule=schedule)
        if options.zero_init:
            zero_output_layer(network)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        u = self.network(x, t).view_as(x)
        return 0.5 * (x - u).flatten(1).pow(2).sum(1)
