"""Sliced Wasserstein-2 between two point clouds (DxMI App. C.1; POT's
``sliced_wasserstein_distance(x, y, n_projections, p=2)``).

    SW₂(x, y) = sqrt( E_θ W₂²(θ·x, θ·y) ),  θ uniform on S^{D−1},

estimated with ``n_projections`` directions. In 1D the optimal coupling matches quantiles, so
W₂² is the mean squared difference of the sorted projections. For unequal sizes n ≠ m the
two empirical quantile functions are step functions on [0, 1]; W₂² = ∫ (F⁻¹(u) − G⁻¹(u))² du
is computed exactly on the merged breakpoints {k/n} ∪ {l/m} (what POT does too), which for
n = m is the sorted-pairs formula.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CHUNK_ELEMENTS = 1 << 22  # projected values held at once per cloud (32 MiB in float64)


def _check_clouds(x: Tensor, y: Tensor, name: str) -> None:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"{name}: x and y must be (n, D) and (m, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0 or len(y) == 0:
        raise ValueError(f"{name}: x and y must be non-empty")


def random_directions(n: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """n directions uniform on S^{dim−1}: normalised standard Gaussians, float64."""
    g = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return g / g.norm(dim=1, keepdim=True)


def _quantile_coupling(n: int, m: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """Indices into the sorted x and y, and the width of each piece of [0, 1] they share."""
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = torch.sort(u).values
    width = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - width / 2
    ix = torch.floor(mid * n).long().clamp_(0, n - 1)
    iy = torch.floor(mid * m).long().clamp_(0, m - 1)
    return ix.to(device), iy.to(device), width.to(device)


@torch.no_grad()
def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    n_projections: int = 1000,
    generator: torch.Generator | None = None,
    projections: Tensor | None = None,
    chunk_size: int | None = None,
) -> float:
    """SW₂ between the rows of x (n, D) and y (m, D), in float64.

    ``projections`` (P, D) replaces the random directions (rows are normalised to unit
    length); otherwise ``n_projections`` are drawn with ``generator``. Directions are
    processed ``chunk_size`` at a time so that 10k × 10k × 1000 stays within tens of MiB.
    """
    _check_clouds(x, y, "sliced_wasserstein")
    device = x.device
    x, y = x.to(device, torch.float64), y.to(device, torch.float64)
    if projections is None:
        theta = random_directions(n_projections, x.shape[1], generator)
    else:
        theta = projections.to(dtype=torch.float64)
        if theta.dim() != 2 or theta.shape[1] != x.shape[1] or len(theta) == 0:
            raise ValueError(f"sliced_wasserstein: projections must be (P, {x.shape[1]}), got {tuple(theta.shape)}")
        theta = theta / theta.norm(dim=1, keepdim=True)
    theta = theta.to(device)
    n, m = len(x), len(y)
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // max(n, m))
    coupling = None if n == m else _quantile_coupling(n, m, device)
    total = 0.0
    for start in range(0, len(theta), chunk):
        t = theta[start : start + chunk].T  # (D, c)
        px, py = torch.sort(x @ t, dim=0).values, torch.sort(y @ t, dim=0).values
        if coupling is None:
            total += ((px - py) ** 2).mean(0).sum().item()
        else:
            ix, iy, width = coupling
            total += (width[:, None] * (px[ix] - py[iy]) ** 2).sum().item()
    return math.sqrt(total / len(theta))
