"""What the trainer measures of the data before step 1 (`ebmkit.types.DataSummary`).

The local scale ℓ is the median, over 2,048 distinct data points (model units), of the distance
to a point's 8th nearest neighbour. It is the width of the data's finest structures as a chain
sees them: 0.022 for 25gaussians (modes of std 0.035), 0.10–0.20 for the other 2D sets. A fixed
number of points makes it a property of the distribution, comparable between data sets;
`NoiseSchedule.langevin_step_sizes` caps Langevin steps with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ebmkit.types import DataSummary

POINTS, NEIGHBOUR = 2048, 8
SEED = 20_211  # its own stream: measuring the data draws nothing from training's


def local_scale(points: Tensor, k: int = NEIGHBOUR) -> float | None:
    """Median distance from each distinct point to its k-th nearest neighbour (fewer neighbours
    where there are fewer points); None for fewer than two distinct points."""
    x = torch.unique(points.double().flatten(1), dim=0)
    if len(x) < 2:
        return None
    distances = torch.cdist(x, x).fill_diagonal_(float("inf"))
    k = min(k, len(x) - 1)
    return float(distances.kthvalue(k, dim=1).values.median())


def summarize(dataset, transform=None) -> DataSummary:
    """The `DataSummary` of a data set, in the units of ``transform`` (the model's); images are
    not measured (they live in [−1, 1], where the image presets' steps were set)."""
    if dataset.is_image:
        return DataSummary()
    x = dataset.sample(POINTS, generator=torch.Generator().manual_seed(SEED))
    return DataSummary(local_scale=local_scale(x if transform is None else transform(x)))
