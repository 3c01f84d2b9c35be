"""Where every random number of a component comes from.

Components draw through `randn`, `rand` and `randint` here, never through ``torch.randn(...,
generator=...)`` directly, because the ``generator`` they are handed need not be a
``torch.Generator``. Two batch-aware generators make sampling independent of how a batch is
split:

- `PerSampleGenerator`: one seeded stream per sample (EDM's ``StackedRandomGenerator``).
  Sample i depends on seed i only, whatever the batch size or process count
  (``ebmkit sample --seeds 0-999``).
- `ShardedGenerator`: every data-parallel rank draws the *global* batch from the same stream
  and keeps its own rows, so N processes together draw exactly what one process with the
  whole batch draws. Drawing the global noise costs N× a small randn; the networks dominate.

A draw whose first dimension is the batch goes through the batch-aware generator row by row;
a plain ``torch.Generator`` (or None) falls through to torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class PerSampleGenerator:
    """One ``torch.Generator`` per sample, seeded with that sample's seed."""

    def __init__(self, seeds: Sequence[int], device="cpu"):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]

    def _check(self, shape) -> None:
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"a per-sample generator for {len(self.generators)} samples cannot draw shape {tuple(shape)}")

    def randn(self, shape, device=None, dtype=None) -> Tensor:
        self._check(shape)
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=self.device, dtype=dtype)
                            for g in self.generators]).to(device or self.device)

    def rand(self, shape, device=None, dtype=None) -> Tensor:
        self._check(shape)
        return torch.stack([torch.rand(tuple(shape[1:]), generator=g, device=self.device, dtype=dtype)
                            for g in self.generators]).to(device or self.device)

    def randint(self, low: int, high: int, shape, device=None) -> Tensor:
        self._check(shape)
        return torch.stack([torch.randint(low, high, tuple(shape[1:]), generator=g, device=self.device)
                            for g in self.generators]).to(device or self.device)


class ShardedGenerator:
    """This rank's rows of a global batch drawn from a stream every rank holds in the same state."""

    def __init__(self, generator: torch.Generator, rank: int, world_size: int):
        self.generator, self.rank, self.world_size = generator, rank, world_size
        self.device = generator.device

    def _rows(self, draw: Tensor, n: int) -> Tensor:
        return draw[self.rank * n:(self.rank + 1) * n]

    def randn(self, shape, device=None, dtype=None) -> Tensor:
        n = shape[0]
        draw = torch.randn((n * self.world_size, *shape[1:]), generator=self.generator, device=self.device, dtype=dtype)
        return self._rows(draw, n).to(device or self.device)

    def rand(self, shape, device=None, dtype=None) -> Tensor:
        n = shape[0]
        draw = torch.rand((n * self.world_size, *shape[1:]), generator=self.generator, device=self.device, dtype=dtype)
        return self._rows(draw, n).to(device or self.device)

    def randint(self, low: int, high: int, shape, device=None) -> Tensor:
        n = shape[0]
        draw = torch.randint(low, high, (n * self.world_size, *shape[1:]), generator=self.generator, device=self.device)
        return self._rows(draw, n).to(device or self.device)


BATCH_GENERATORS = (PerSampleGenerator, ShardedGenerator)


def randn(shape, generator=None, device=None, dtype=None) -> Tensor:
    """``torch.randn(shape)`` from ``generator``, a batch-aware one included."""
    if isinstance(generator, BATCH_GENERATORS):
        return generator.randn(tuple(shape), device=device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def randn_like(x: Tensor, generator=None) -> Tensor:
    return randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def rand(shape, generator=None, device=None, dtype=None) -> Tensor:
    """``torch.rand(shape)`` (uniform on [0, 1)) from ``generator``, a batch-aware one included."""
    if isinstance(generator, BATCH_GENERATORS):
        return generator.rand(tuple(shape), device=device, dtype=dtype)
    return torch.rand(tuple(shape), generator=generator, device=device, dtype=dtype)


def randint(low: int, high: int, shape, generator=None, device=None) -> Tensor:
    """``torch.randint(low, high, shape)`` from ``generator``, a batch-aware one included."""
    if isinstance(generator, BATCH_GENERATORS):
        return generator.randint(low, high, tuple(shape), device=device)
    return torch.randint(low, high, tuple(shape), generator=generator, device=device)
