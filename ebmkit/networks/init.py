"""Initialisation helpers shared by parameterisations and samplers."""

from __future__ import annotations

from torch import nn


def zero_output_layer(module: nn.Module) -> None:
    """Zero the last affine layer, so a residual parameterisation starts at its base point."""
    last = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)
