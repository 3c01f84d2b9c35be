"""DDAEBM's 2D networks (Geng et al. 2024, App. Table 6): embedding nets, then a decoder.

    h = decoder([ mlp_x(x), mlp_t(sinusoid(t)) ])

Every layer but the last is Linear → [BatchNorm] → PReLU; the last is a plain Linear. The level
is embedded as the integer itself (16 sinusoid features), as the paper's code does. BatchNorm
always normalises with the batch's own statistics (the reference code never leaves train mode,
sampling included), so it holds no running buffers.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from ebmkit.networks.embedding import sinusoidal_embedding
from ebmkit.registry import NETWORKS, Options


def mlp(in_dim: int, widths: list[int], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, w in enumerate(widths):
        layers.append(nn.Linear(in_dim, w))
        if i < len(widths) - 1:
            if batch_norm:
                layers.append(nn.BatchNorm1d(w, track_running_stats=False))
            layers.append(nn.PReLU())
        in_dim = w
    return nn.Sequential(*layers)


@NETWORKS.register("embed_mlp")
class EmbedMLP(nn.Module):
    """x-branch and level-branch MLPs, concatenated, then a decoder MLP (DDAEBM's toy nets)."""

    class Options(Options):
        x_widths: list[int] = Field([16, 32], min_length=1)
        t_widths: list[int] = Field([16, 32], min_length=1)
        decoder_widths: list[int] = Field([300, 300], description="hidden widths; the output layer is added")
        embedding_dim: int = Field(16, ge=2)
        batch_norm: bool = Field(False, description="BatchNorm in the x-branch and decoder (DDAEBM's generator)")

    def __init__(self, options: Options, *, dim: int, num_levels: int, out_dim: int = 1, cond_dim: int = 0):
        super().__init__()
        c = self.config = options
        self.out_dim = out_dim
        self.x_net = mlp(dim + cond_dim, c.x_widths, c.batch_norm)  # DDAEBM's generator: [x, z]
        self.t_net = mlp(c.embedding_dim, c.t_widths, False)
        self.decoder = mlp(c.x_widths[-1] + c.t_widths[-1], [*c.decoder_widths, out_dim], c.batch_norm)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        temb = self.t_net(sinusoidal_embedding(t, self.config.embedding_dim))
        h = x.flatten(1) if cond is None else torch.cat([x.flatten(1), cond], dim=1)
        out = self.decoder(torch.cat([self.x_net(h), temb], dim=1))
        return out.squeeze(1) if self.out_dim == 1 else out
