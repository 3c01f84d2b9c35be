"""Time-conditioned ResNets from images to a vector: the image EBMs of DRL and CDRL, DxMI's
IGEBM-style energy/value, and (small) DDAEBM's variational encoder.

    conv3×3 → [ResBlock × num_res_blocks] per resolution, 2×2 average pooling between them
    → ReLU → sum over H×W → head

ResBlock (DRL, Gao et al. 2021, network.py): h = conv(lrelu(x)); h += Dense(lrelu(temb))
(CDRL: lrelu after the dense too); h = γ · conv(lrelu(h)) with a learnable per-channel γ;
out = shortcut(x) + h. Leaky-ReLU slope 0.2, no normalisation, optional spectral norm on every
conv and on the level embedding's dense layers. ``activation: silu`` replaces the leaky-ReLUs on
the image path and the final ReLU by SiLU: a piecewise-linear energy has a piecewise-constant
∇ₓE, a poor velocity field for a flow trained on −∇ₓE (`energy_matching`).

Heads: ``temb`` — DRL's Σ_c w_c(t) Σ_{hw} relu(h)_{chw}, the level entering multiplicatively
(scalar outputs only); ``linear`` — Linear(C, out_dim) on the summed features (DxMI's IGEBM
head, the encoder's μ and log σ²).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ebmkit.networks.embedding import LevelEmbedding
from ebmkit.registry import NETWORKS, Options

SLOPE = 0.2  # leaky-ReLU slope of DRL's and IGEBM's code (TF default)
ACTIVATIONS = {"lrelu": lambda x: F.leaky_relu(x, SLOPE), "silu": F.silu}


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb_dim: int, temb_activation: bool, activation: str = "lrelu"):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.gamma = nn.Parameter(torch.ones(c_out))
        self.shortcut = nn.Conv2d(c_in, c_out, 3, padding=1) if c_in != c_out else nn.Identity()
        self.temb_activation = temb_activation

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(self.act(x))
        t = self.temb(F.leaky_relu(temb, SLOPE))
        h = h + (F.leaky_relu(t, SLOPE) if self.temb_activation else t)[:, :, None, None]
        h = self.conv2(self.act(h)) * self.gamma[None, :, None, None]
        return self.shortcut(x) + h


@NETWORKS.register("resnet")
class ResNet(nn.Module):
    """Image → vector (a scalar energy by default) ResNet, level-conditioned."""

    class Options(Options):
        channels: int = Field(128, ge=1, description="width of the first resolution (DRL/CDRL: 128)")
        channel_mult: list[int] = Field([1, 2, 2, 2], min_length=1, description="width multiplier per resolution")
        num_res_blocks: int = Field(2, ge=1, description="blocks per resolution (DRL/CDRL CIFAR-10: 8)")
        embedding: Literal["sinusoidal", "learned"] = "sinusoidal"
        embedding_dim: int = Field(128, ge=2)
        temb_dim: int = Field(512, ge=1)
        temb_activation: bool = Field(False, description="lrelu after each block's level projection (CDRL; DRL: off)")
        head: Literal["temb", "linear"] = Field("temb", description="'temb': DRL's level-weighted sum (scalar output); 'linear'")
        spectral_norm: bool = Field(True, description="spectral-normalise every conv and the level embedding (DRL, CDRL)")
        activation: Literal["lrelu", "silu"] = Field(
            "lrelu", description="the image path's nonlinearity: leaky-ReLU 0.2 (DRL, CDRL, IGEBM) then ReLU before "
                                 "the sum, or SiLU for both (a smooth ∇ₓE)")

    def __init__(self, options: Options, *, dim: int, num_levels: int, out_dim: int = 1,
                 shape: tuple[int, ...] | None = None):
        super().__init__()
        c = self.config = options
        if shape is None or len(shape) != 3:
            raise ValueError(f"resnet needs image data (C, H, W); this data has points of shape {shape or (dim,)}")
        if c.head == "temb" and out_dim != 1:
            raise ValueError(f"head 'temb' gives one scalar; this use needs {out_dim} outputs: set head to 'linear'")
        self.shape, self.out_dim = tuple(shape), out_dim
        self.level_embedding = LevelEmbedding(num_levels, c.embedding_dim, c.embedding)
        self.temb = nn.Sequential(nn.Linear(c.embedding_dim, c.temb_dim), nn.LeakyReLU(SLOPE),
                                  nn.Linear(c.temb_dim, c.temb_dim))
        self.inp = nn.Conv2d(shape[0], c.channels, 3, padding=1)
        blocks, ch = [], c.channels
        for i, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(ch, c.channels * mult, c.temb_dim, c.temb_activation, c.activation))
                ch = c.channels * mult
            blocks.append(nn.AvgPool2d(2) if i < len(c.channel_mult) - 1 else nn.Identity())
        self.blocks = nn.ModuleList(blocks)
        if options.spectral_norm:  # before the head: DRL leaves the head's dense unnormalised
            for module in list(self.modules()):
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(module)
        self.head = nn.Linear(c.temb_dim if c.head == "temb" else ch, ch if c.head == "temb" else out_dim,
                              bias=c.head != "temb")

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = self.temb(self.level_embedding(t))
        h = self.inp(x.reshape(x.shape[0], *self.shape))
        for block in self.blocks:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
        features = (F.relu(h) if self.config.activation == "lrelu" else F.silu(h)).sum(dim=(2, 3))
        if self.config.head == "temb":
            return (features * self.head(F.leaky_relu(temb, SLOPE))).sum(1)
        out = self.head(features)
        return out.squeeze(1) if self.out_dim == 1 else out
