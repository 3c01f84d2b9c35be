"""The records shared by every component kind: what flows through one training step, and what
the trainer measures of its data before the first."""

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


@dataclass(frozen=True)
class DataSummary:
    """What the trainer measures of the training data, in the model's units, before step 1:
    component options set to 'auto' are fitted to it (`ebmkit.compose.fit`) and saved resolved.

    local_scale: ℓ of `ebmkit.data.summary.local_scale`, the typical distance between
    neighbouring data points; None where it is not measured (images).
    """

    local_scale: float | None = None
