"""`fourier_mlp`: ebmkit's residual MLP on random Fourier features [sin Bx, cos Bx].

Fourier features let a small MLP draw sharp, ring-like level sets (Tancik et al., 2020). B is
drawn once from its own seed and kept as a persistent buffer, so it is saved with the weights
and a pushed model rebuilds exactly.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from ebmkit.networks import TimeMLP
from ebmkit.registry import Options


class FourierMLP(nn.Module):
    """Residual MLP f(x, t) on random Fourier features of x; `out_dim=1` gives a scalar."""

    class Options(Options):
        features: int = Field(64, ge=1, description="number of frequencies (the MLP sees 2× this)")
        scale: float = Field(1.0, gt=0, description="std of the frequencies B ~ N(0, scale²)")
        seed: int = Field(0, description="seed of B")
        width: int = Field(128, ge=1)
        depth: int = Field(3, ge=0)

    def __init__(self, options: Options, *, dim: int, num_levels: int, out_dim: int = 1):
        super().__init__()
        self.config = options
        B = torch.randn(dim, options.features, generator=torch.Generator().manual_seed(options.seed)) * options.scale
        self.register_buffer("frequencies", B)
        self.mlp = TimeMLP(TimeMLP.Options(width=options.width, depth=options.depth),
                           dim=2 * options.features, num_levels=num_levels, out_dim=out_dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        z = 2 * math.pi * x.flatten(1) @ self.frequencies
        return self.mlp(torch.cat([z.sin(), z.cos()], dim=1), t)
