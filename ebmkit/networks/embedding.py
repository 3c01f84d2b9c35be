"""Level embeddings shared by every time-conditioned network."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """DDPM / fairseq embedding: [sin(t ω_k), cos(t ω_k)], ω_k = max_period^(−k/(dim/2 − 1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))


class LevelEmbedding(nn.Module):
    """Integer level t ∈ {0..T} → vector: sinusoid of 1000·t/T (as DDPM time) or a learned table."""

    def __init__(self, num_levels: int, dim: int, kind: str = "sinusoidal"):
        super().__init__()
        self.num_levels, self.dim, self.kind = num_levels, dim, kind
        if kind == "learned":
            self.table = nn.Embedding(num_levels + 1, dim)
        elif kind != "sinusoidal":
            raise ValueError(f"level embedding must be 'sinusoidal' or 'learned', got {kind!r}")

    def forward(self, t: Tensor) -> Tensor:
        if self.kind == "learned":
            return self.table(t.long())
        return sinusoidal_embedding(1000.0 * t.float() / self.num_levels, self.dim)
