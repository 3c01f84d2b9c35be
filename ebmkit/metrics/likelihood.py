"""Exact normalised log-likelihood in 2D: an unnormalised density exp(f) is normalised by
summing it over a fine grid of the box, which is exact up to the grid's quadrature error.

    log Z ≈ logsumexp_{cells c} f(c) + log |cell|,    log p(x) = f(x) − log Z   on [lo, hi]²

The density is the one restricted to the box: held-out points outside it are clamped onto its
edge before f is evaluated (so a model is not rewarded or punished for mass it cannot have
inside the box). Pick a box that contains the data, as the toy sets' [−4, 4]² does.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ebmkit.metrics.batching import apply_in_batches


def grid_log_normaliser(
    log_density_fn: Callable[[Tensor], Tensor], box: tuple[float, float], resolution: int = 256, dtype=torch.float32
) -> float:
    """log Z of exp(f) on [lo, hi]², midpoint rule on resolution² cells, float64 logsumexp."""
    lo, hi = float(box[0]), float(box[1])
    if not hi > lo:
        raise ValueError(f"grid_log_likelihood: box must be (lo, hi) with lo < hi, got {box}")
    if resolution < 2:
        raise ValueError(f"grid_log_likelihood: resolution must be at least 2, got {resolution}")
    h = (hi - lo) / resolution
    c = lo + h * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    centres = torch.cartesian_prod(c, c).to(dtype)
    f = apply_in_batches(log_density_fn, centres)
    return torch.logsumexp(f, 0).item() + 2 * math.log(h)


@torch.no_grad()
def grid_log_likelihood(
    log_density_fn: Callable[[Tensor], Tensor], x: Tensor, box: tuple[float, float], resolution: int = 256
) -> float:
    """Mean log-likelihood (nats) of x (n, 2) under exp(f) normalised on the box [lo, hi]².

    ``log_density_fn`` = f maps (n, 2) → (n,), e.g. −E(x); any additive constant cancels.
    """
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"grid_log_likelihood integrates on a 2D grid; x must be (n, 2), got {tuple(x.shape)}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    log_z = grid_log_normaliser(log_density_fn, box, resolution, dtype)
    inside = x.to(dtype).clamp(float(box[0]), float(box[1]))
    return (apply_in_batches(log_density_fn, inside).mean() - log_z).item()


def true_log_likelihood(dataset, x: Tensor) -> float:
    """Mean exact log p(x) of a data set that knows its density (``dataset.has_log_prob``)."""
    return dataset.log_prob(x).double().mean().item()
