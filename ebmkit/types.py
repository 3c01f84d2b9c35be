"""The two records that flow through one training step, shared by every component kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class TrainingBatch:
    """What one training step works on, for every recipe.

    positives: samples of the variable the energy at ``level`` models (for recovery
    likelihood, y = a_{t+1} x_t); condition: what the conditional is given (x_{t+1});
    level: t per sample; data: the clean batch it came from.
    """

    positives: Tensor
    condition: Tensor
    level: Tensor
    data: Tensor


@dataclass
class LossOutput:
    """A loss to backpropagate and detached scalar tensors to log (read at log time only,
    so the hot loop never waits on the device)."""

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
