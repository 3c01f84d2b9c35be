"""A compact DDPM++/NCSN++-style U-Net: image in, image out, conditioned on the level and,
optionally, on a latent vector z (DDGAN's generator, through adaptive GroupNorm).

Serves every "data-shaped" network of the four papers: DDAEBM's energy U in
E = ½‖x − U(x, t)‖² and its z-conditioned generator, CDRL's initializer, DxMI's ε-policy.
Structure (Song et al. 2021's DDPM++, Ho et al. 2020's U-Net):

    conv3×3 → [ResBlock × num_res_blocks (+ attention at attn_resolutions)] per resolution,
    down-sampling between resolutions → middle (ResBlock, attention, ResBlock) → mirrored
    up path with skip concatenations → GroupNorm → SiLU → conv3×3 (zero-initialised)

Residual and attention outputs are scaled by 1/√2 (NCSN++'s skip_rescale), which keeps the
activations' scale fixed with depth. The second conv of each block starts at zero, so every
block starts as the identity.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ebmkit.networks.embedding import LevelEmbedding
from ebmkit.registry import NETWORKS, Options

SKIP_SCALE = 1 / math.sqrt(2)


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups (DDPM), fewer where the channels do not allow it (small CPU presets)."""
    groups = min(32, channels // 4) or 1
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm whose scale and shift come from the latent's embedding (DDGAN's AdaGN)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.norm.weight, self.norm.bias = None, None  # the affine comes from z
        self.norm.affine = False
        self.style = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.style.weight)
        self.style.bias.data = torch.cat([torch.ones(channels), torch.zeros(channels)])

    def forward(self, h: Tensor, zemb: Tensor) -> Tensor:
        gamma, beta = self.style(zemb)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(h) + beta


class ResBlock(nn.Module):
    """BigGAN/DDPM++ residual block: norm → SiLU → conv → + Dense(temb) → norm → SiLU → dropout → conv."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float, zemb_dim: int = 0):
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(c_in, zemb_dim) if zemb_dim else group_norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, c_out)
        self.norm2 = AdaptiveGroupNorm(c_out, zemb_dim) if zemb_dim else group_norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def _norm(self, norm: nn.Module, h: Tensor, zemb: Optional[Tensor]) -> Tensor:
        return norm(h, zemb) if isinstance(norm, AdaptiveGroupNorm) else norm(h)

    def forward(self, x: Tensor, temb: Tensor, zemb: Optional[Tensor] = None) -> Tensor:
        h = self.conv1(F.silu(self._norm(self.norm1, x, zemb)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self._norm(self.norm2, h, zemb))))
        return (self.skip(x) + h) * SKIP_SCALE


class Attention(nn.Module):
    """Single-head self-attention over the H·W positions (DDPM's AttnBlock)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, hh * ww).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return (x + self.proj(h.transpose(-1, -2).reshape(n, c, hh, ww))) * SKIP_SCALE


@NETWORKS.register("unet")
class UNet(nn.Module):
    """Time-conditioned U-Net for images (DDPM++ family); output has the input's shape."""

    class Options(Options):
        channels: int = Field(64, ge=4, description="base width (nf); DDAEBM's CIFAR energy 128, CDRL's initializer 64")
        channel_mult: list[int] = Field([1, 2, 2], min_length=1, description="width multiplier per resolution")
        num_res_blocks: int = Field(2, ge=1)
        attn_resolutions: list[int] = Field([16], description="resolutions (pixels) with self-attention")
        dropout: float = Field(0.1, ge=0, lt=1)
        embedding: Literal["sinusoidal", "learned"] = "sinusoidal"
        resample: Literal["conv", "avgpool"] = Field("conv", description="down/up-sampling with a strided / 3×3 conv, or pooling")
        latent_embedding_dim: int = Field(256, ge=1, description="z-embedding width (DDGAN: 256)")
        mapping_layers: int = Field(4, ge=0, description="z mapping network depth after the first dense (DDGAN: 4)")
        output: Literal["linear", "tanh"] = Field("linear", description="tanh: outputs in [−1, 1] (DDGAN's generator)")

        @model_validator(mode="after")
        def _mults(self):
            if any(m < 1 for m in self.channel_mult):
                raise ValueError(f"channel_mult entries must be ≥ 1, got {self.channel_mult}")
            return self

    def __init__(self, options: Options, *, dim: int, num_levels: int, out_dim: int = 1,
                 shape: tuple[int, ...] | None = None, cond_dim: int = 0):
        super().__init__()
        c = self.config = options
        if shape is None or len(shape) != 3:
            raise ValueError(f"unet needs image data (C, H, W); this data has points of shape {shape or (dim,)}")
        channels, res, _ = shape
        if out_dim != dim:
            raise ValueError(f"unet's output has the data's shape ({dim} values), not {out_dim}: use it where a "
                             "data-shaped network is expected (residual_norm energy, generator, initializer, policy)")
        if res % 2 ** (len(c.channel_mult) - 1):
            raise ValueError(f"{res}×{res} images cannot be halved {len(c.channel_mult) - 1} times "
                             f"(channel_mult {c.channel_mult}); use fewer resolutions")
        self.shape, nf = tuple(shape), c.channels
        temb_dim = 4 * nf
        self.level_embedding = LevelEmbedding(num_levels, nf, c.embedding)
        self.temb = nn.Sequential(nn.Linear(nf, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        zd = c.latent_embedding_dim if cond_dim else 0
        if cond_dim:  # DDGAN's mapping network: PixelNorm(z) → dense → SiLU → mapping_layers × [dense, SiLU]
            layers: list[nn.Module] = [nn.Linear(cond_dim, zd), nn.SiLU()]
            for _ in range(c.mapping_layers):
                layers += [nn.Linear(zd, zd), nn.SiLU()]
            self.mapping = nn.Sequential(*layers)

        def block(ci, co):
            return ResBlock(ci, co, temb_dim, c.dropout, zd)

        self.inp = nn.Conv2d(channels, nf, 3, padding=1)
        widths, skips = [nf], []
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        ch = nf
        for i, mult in enumerate(c.channel_mult):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(block(ch, nf * mult))
                ch = nf * mult
                blocks.append(Attention(ch) if res in c.attn_resolutions else nn.Identity())
                widths.append(ch)
            self.down.append(nn.ModuleList(blocks))
            if i < len(c.channel_mult) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1) if c.resample == "conv"
                                       else nn.AvgPool2d(2))
                widths.append(ch)
                res //= 2
        self.mid = nn.ModuleList([block(ch, ch), Attention(ch), block(ch, ch)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(c.channel_mult))):
            blocks = []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(block(ch + widths.pop(), nf * mult))
                ch = nf * mult
                blocks.append(Attention(ch) if res in c.attn_resolutions else nn.Identity())
            self.up.append(nn.ModuleList(blocks))
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1) if c.resample == "conv" else nn.Identity())
                res *= 2
        self.out_norm = group_norm(ch)
        self.out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _run(self, blocks: nn.ModuleList, h: Tensor, temb: Tensor, zemb: Optional[Tensor]) -> Tensor:
        for b in blocks:
            h = b(h, temb, zemb) if isinstance(b, ResBlock) else b(h)
        return h

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        x = x.reshape(x.shape[0], *self.shape)
        temb = self.temb(self.level_embedding(t))
        zemb = None
        if hasattr(self, "mapping"):
            if cond is None:
                raise ValueError("this unet is latent-conditioned: call it as net(x, t, z)")
            zemb = self.mapping(cond / cond.pow(2).mean(1, keepdim=True).add(1e-8).sqrt())  # PixelNorm
        h = self.inp(x)
        hs = [h]
        for i, blocks in enumerate(self.down):
            for j in range(0, len(blocks), 2):
                h = blocks[j + 1](blocks[j](h, temb, zemb))
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self._run(self.mid, h, temb, zemb)
        for i, blocks in enumerate(self.up):
            for j in range(0, len(blocks), 2):
                h = blocks[j + 1](blocks[j](torch.cat([h, hs.pop()], dim=1), temb, zemb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.out(F.silu(self.out_norm(h)))
        return torch.tanh(out) if self.config.output == "tanh" else out
