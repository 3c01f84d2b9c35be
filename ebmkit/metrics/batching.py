"""Evaluate a per-point function on many points without holding every activation at once."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

BATCH = 4096


@torch.no_grad()
def apply_in_batches(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = BATCH) -> Tensor:
    """fn(x) for x (n, D) → (n,) in float64 on the CPU, ``batch_size`` rows per call."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        v = torch.as_tensor(fn(xb)).detach().reshape(-1)
        if len(v) != len(xb):
            raise ValueError(f"expected one value per point ({len(xb)}), got shape {tuple(v.shape)}")
        out.append(v.to("cpu", torch.float64))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
