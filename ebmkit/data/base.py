"""The data-set contract: seeded samples, a plotting/evaluation box, and the exact density where
one is known.

Every draw goes through the caller's ``torch.Generator`` (torch ops only, no numpy or global
RNG when a generator is given), so a seed fixes the data bit-for-bit across runs and resumes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class DataError(ValueError):
    """The user's data cannot be used as given: one message says what was found and why."""


class Dataset(ABC):
    """Points in R^dim, each shaped ``shape`` (``(dim,)`` for vectors, ``(C, H, W)`` for images).

    ``box = (lo, hi)`` is the square [lo, hi]^dim on which densities are plotted, uniform
    negatives for the energy AUC are drawn, and the 2D grid likelihood is normalised; images
    live in [−1, 1].
    """

    dim: int
    box: tuple[float, float]
    has_log_prob: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one point; vector data sets need not say it."""
        return (self.dim,)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n points, float32 on the CPU, shape (n, *shape); a CPU ``generator`` fixes them."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{type(self).__name__}.sample: n must be a non-negative int, got {n!r}")
        x = self._sample(n, generator)
        return x.to(device="cpu", dtype=torch.float32).reshape(n, *self.shape)

    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """The draw itself; ``sample`` checks n and fixes dtype, device and shape."""

    def standardization(self):
        """The `ebmkit.data.transform.Standardize` the model should train in, or None to use the
        data as given. Built-in sets are defined at the scale the presets were tuned for (their
        box is [−4, 4]², images live in [−1, 1]); a user's file is standardised by default."""
        return None

    def local_paths(self) -> dict[str, str]:
        """The options that name files or folders on this machine, made absolute, so that a run
        resumes and evaluates from any working directory ({} for data made by code)."""
        return {}

    def fingerprint(self) -> str | None:
        """A sha256 of the content read, where one is cheap to take; a resumed run refuses data
        whose fingerprint changed. None where the data is made by code or not hashed."""
        return None

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact normalised log-density log p(x), shape (n,); only where ``has_log_prob``."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form density (has_log_prob is False); "
            "compare models on it with sample-based metrics (sliced Wasserstein, MMD) instead"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, box={self.box})"
