"""DDAEBM's image energy (Geng et al. 2024, Eq. 24): a negative norm between input and output.

    E(x, t) = ½ ‖x − U_θ(x, t)‖²     (the paper's f = −E; Du et al. 2023's parameterisation)

U has the data's shape. With U's last layer at zero (``zero_init``), E starts as ½‖x‖², the standard normal's
energy, so the untrained model is already the forward process's terminal density.

``scale`` multiplies E by a per-level factor k_t: 1 (``none``), 1/σ̄_t (``inv_sigma``) or 1/σ̄_t²
(``inv_sigma_sq``: E = ½‖x − U‖²/σ̄_t², the denoiser form of specs/dsm.md §3 D, whose score
≈ −(x − U)/σ̄_t² asks U for √ᾱ_t times a denoised x rather than for ε/σ̄_t-sized residuals). On a
schedule whose level 0 is noise-free, level 0 takes level 1's σ̄.
"""

from __future__ import annotations

from typing import Literal

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
        scale: Literal["none", "inv_sigma", "inv_sigma_sq"] = Field(
            "none", description="E times 1, 1/σ̄_t or 1/σ̄_t² (the denoiser form for score matching)")

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"level_T"})  # the network embeds any level, the prior's T included

    def __init__(self, options, *, network, schedule):
        super().__init__(options, network=network, schedule=schedule)
        if options.zero_init:
            zero_output_layer(network)
        if options.scale != "none":
            sigma = schedule.sigmas_cumprod.clone()
            sigma[sigma == 0] = sigma[sigma > 0].min()  # a noise-free level 0 takes level 1's σ̄
            power = 1 if options.scale == "inv_sigma" else 2
            self.register_buffer("level_scale", sigma.pow(-power).float(), persistent=False)  # k_t

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        u = self.network(x, t).view_as(x)
        energy = 0.5 * (x - u).flatten(1).pow(2).sum(1)
        return energy if self.config.scale == "none" else energy * self.level_scale[t]
