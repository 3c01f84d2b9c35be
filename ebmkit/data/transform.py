"""The map between the data's units and the model's: per-axis standardisation.

Every schedule assumes data of about unit scale (level T ≈ N(0, I)), and the presets' step
sizes were tuned at that scale. A user's points come in any units, so a data set may ask to be
trained standardised, z = (x − μ) / σ per axis with μ, σ the mean and standard deviation of
its points. The model then lives in z; `EnergyModel` maps back, so that what users see
(samples, energies, evaluation, pictures) is in the data's own units, log-densities included:

    log p_x(x) = log p_z((x − μ) / σ) − Σ_i log σ_i.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Standardize(nn.Module):
    """z = (x − shift) / scale, per axis; ``inverse`` maps z back. An axis whose values are all
    equal keeps scale 1 (nothing to divide)."""

    def __init__(self, shift: Sequence[float], scale: Sequence[float]):
        super().__init__()
        if len(shift) != len(scale) or not all(math.isfinite(s) and s > 0 for s in scale):
            raise ValueError(f"Standardize: shift and scale must be equally long, scale finite and > 0; got "
                             f"{list(shift)} and {list(scale)}")
        self.shift_values, self.scale_values = [float(v) for v in shift], [float(v) for v in scale]
        # not persistent: the numbers live in config.json (`to_config`), not among the weights
        self.register_buffer("shift", torch.tensor(self.shift_values, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor(self.scale_values, dtype=torch.float32), persistent=False)

    @classmethod
    def of(cls, points: Tensor) -> "Standardize":
        """Mean and standard deviation of each axis of ``points`` (n, D), in float64."""
        x = points.double().flatten(1)
        std = x.std(0, unbiased=False)
        return cls(x.mean(0).tolist(), torch.where(std > 0, std, torch.ones_like(std)).tolist())

    def forward(self, x: Tensor) -> Tensor:
        """Data units → model units."""
        return (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        """Model units → data units."""
        return z * self.scale.to(z.dtype) + self.shift.to(z.dtype)

    @property
    def log_det(self) -> float:
        """log |det ∂z/∂x| = −Σ_i log σ_i: add it to log p_z to get log p_x."""
        return -sum(math.log(s) for s in self.scale_values)

    def to_config(self) -> dict:
        return {"name": "standardize", "shift": self.shift_values, "scale": self.scale_values}

    @classmethod
    def from_config(cls, config: dict | None) -> "Standardize | None":
        """The transform a run's config.json records (None: the data was used as given)."""
        if config is None:
            return None
        if not isinstance(config, dict) or config.get("name") != "standardize":
            raise ValueError(f"unknown data transform {config!r}; this ebmkit knows 'standardize'")
        return cls(config["shift"], config["scale"])

    def describe(self) -> str:
        def fmt(values):
            shown = ", ".join(f"{v:.4g}" for v in values[:4])
            return f"[{shown}{', …' if len(values) > 4 else ''}]"

        return f"standardised per axis (mean {fmt(self.shift_values)}, std {fmt(self.scale_values)})"

    def extra_repr(self) -> str:
        return self.describe()


MEASURED_POINTS, MEASURED_SEED = 100_000, 20_212  # its own stream, as `ebmkit.data.summary`'s


def standardization_for(dataset, standardize: bool | None) -> Standardize | None:
    """The transform a run trains in (``train.standardize``): the data set's own choice for None
    (`Dataset.standardization`: a user's file yes, a built-in set no), none for False, and for
    True the data set's, or one measured on 100,000 of its points. Images are refused: per-pixel
    statistics would undo the [−1, 1] range every image preset is set in."""
    if standardize is None:
        return dataset.standardization()
    if not standardize:
        return None
    if dataset.is_image:
        raise ValueError(f"train.standardize: true is for point data; {dataset!r} is an image set (its pixels "
                         "live in [−1, 1] already): set train.standardize to null or false")
    own = dataset.standardization()
    if own is not None:
        return own
    return Standardize.of(dataset.sample(MEASURED_POINTS, generator=torch.Generator().manual_seed(MEASURED_SEED)))
