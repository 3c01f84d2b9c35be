"""Backbones: networks that map (x, level) to features or a scalar. Parameterisations live in
`ebmkit.energies`, the way EDM separates preconditioning from the U-Net.

The network contract: ``cls(options, *, dim, num_levels, out_dim)`` and ``forward(x, t)``, where
``dim`` is the number of values in one point and the output is (n,) for ``out_dim == 1``, else
``out_dim`` values per point (any shape holding them; callers reshape). Two keywords are
passed only when they carry something ``dim`` does not: ``shape=(C, H, W)`` for images, and
``cond_dim`` for a network that also takes a latent vector, ``forward(x, t, z)`` (DDAEBM's
generator). A network that takes neither keeps working on vectors.
"""

from __future__ import annotations

import math
from typing import Any

from ebmkit.networks.embedding import LevelEmbedding, sinusoidal_embedding
from ebmkit.networks.embed_mlp import EmbedMLP
from ebmkit.networks.mlp import TimeMLP
from ebmkit.networks.resnet import ResNet
from ebmkit.networks.unet import UNet
from ebmkit.registry import NETWORKS, ComponentError, parse_spec


def build_network(spec: Any, *, shape: tuple[int, ...], num_levels: int, out_dim: int, cond_dim: int = 0):
    """Build a network for points of ``shape``; says clearly when it cannot take them."""
    extra: dict[str, Any] = {}
    if len(shape) > 1:
        extra["shape"] = tuple(shape)
    if cond_dim:
        extra["cond_dim"] = cond_dim
    try:
        return NETWORKS.build(spec, dim=math.prod(shape), num_levels=num_levels, out_dim=out_dim, **extra)
    except TypeError as exc:
        if not extra or "unexpected keyword" not in str(exc):
            raise
        name = parse_spec(spec, "networks")[0]
        what = " and ".join(f"{k}={v}" for k, v in extra.items())
        raise ComponentError(f"network '{name}' does not take {what}: it works on vectors only; "
                             f"for images use one of: unet, resnet") from None


__all__ = ["NETWORKS", "LevelEmbedding", "TimeMLP", "EmbedMLP", "ResNet", "UNet", "build_network",
           "sinusoidal_embedding"]
