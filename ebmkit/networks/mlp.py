"""Time-conditioned residual MLP for vector data (the 2D networks of DRL/CDRL prototypes)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ebmkit.networks.embedding import LevelEmbedding
from ebmkit.registry import NETWORKS, Options

ACTIVATIONS = {"lrelu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU, "relu": nn.ReLU}


class ResidualBlock(nn.Module):
    """h ← h + W₂ act(h + W₁ temb): the level enters every block additively."""

    def __init__(self, width: int, temb_dim: int, act: str):
        super().__init__()
        self.temb = nn.Linear(temb_dim, width)
        self.act = ACTIVATIONS[act]()
        self.out = nn.Linear(width, width)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        return h + self.out(self.act(h + self.temb(temb)))


@NETWORKS.register("mlp")
class TimeMLP(nn.Module):
    """Residual MLP f(x, t) for vectors; `out_dim=1` gives one scalar per sample."""

    class Options(Options):
        width: int = Field(128, ge=1)
        depth: int = Field(3, ge=0, description="number of residual blocks")
        embedding: Literal["sinusoidal", "learned"] = "sinusoidal"
        embedding_dim: int = Field(32, ge=2)
        activation: Literal["lrelu", "silu", "relu"] = "lrelu"
        spectral_norm: bool = Field(False, description="spectral-normalise every Linear (CDRL's 2D EBM)")

    def __init__(self, options: Options, *, dim: int, num_levels: int, out_dim: int = 1, cond_dim: int = 0):
        super().__init__()
        self.config, self.out_dim = options, out_dim
        w = options.width
        self.level_embedding = LevelEmbedding(num_levels, options.embedding_dim, options.embedding)
        self.temb = nn.Sequential(nn.Linear(options.embedding_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.inp = nn.Linear(dim + cond_dim, w)  # a latent z joins the input
        self.blocks = nn.ModuleList(ResidualBlock(w, w, options.activation) for _ in range(options.depth))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(w, out_dim))
        if options.spectral_norm:  # bounds the slope of g, hence the Langevin drift ½∇g
            for module in list(self.modules()):
                if isinstance(module, nn.Linear):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        temb = self.temb(self.level_embedding(t))
        h = self.inp(x.flatten(1) if cond is None else torch.cat([x.flatten(1), cond], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        out = self.head(h)
        return out.squeeze(1) if self.out_dim == 1 else out
