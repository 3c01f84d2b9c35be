"""The records shared by every component kind: what flows through one training step, and what
the trainer measures of its data before the first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import Tensor, nn


@dataclass
class TrainingBatch:
    """What one training step works on, for every recipe.

    positives: samples of the variable the energy at ``level`` models (for recovery
    likelihood, y = a_{t+1} x_t); condition: what the conditional is given (x_{t+1});
    level: t per sample; data: the clean batch it came from; more: further independent clean
    batches, for a divergence whose ``data_batches`` is above 1 (Energy Matching's flow batch and
    contrastive batch), drawn by the trainer after ``data``.
    """

    positives: Tensor
    condition: Tensor
    level: Tensor
    data: Tensor
    more: tuple[Tensor, ...] = ()


@dataclass
class LossOutput:
    """A loss to backpropagate and detached scalar tensors to log (read at log time only,
    so the hot loop never waits on the device)."""

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class SampleRecord:
    """What `Sampler.sample` returns: the negatives, shaped like the training batch's positives,
    and what the sampler's own objective needs later in the same step (a latent, a proposal, a
    trajectory), by name. Nothing is parked on a module between two calls: it travels here.
    ``metrics``: detached scalars about the draw to log (how far a chain moved), as a
    `LossOutput`'s."""

    negatives: Tensor
    saved: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Update:
    """One optimizer step of a training step's plan.

    group: the parameter group it steps ("energy", "sampler", or one a component declares);
    loss: builds the loss when the trainer reaches this update, so it sees the parameters the
    previous updates left; what: names the loss to the divergence watch, with ``{divergence}``
    and ``{sampler}`` standing for the recipe's component names; frozen: modules the loss reads
    but must not train; loss_key / grad_key: where stats.jsonl logs the loss and its gradient
    norm (None: only the loss's own metrics)."""

    group: str
    loss: Callable[[], LossOutput]
    what: str
    frozen: tuple[nn.Module, ...] = ()
    loss_key: str | None = None
    grad_key: str | None = None


@dataclass(frozen=True)
class DataSummary:
    """What the trainer measures of the training data, in the model's units, before step 1:
    component options set to 'auto' are fitted to it (`ebmkit.compose.fit`) and saved resolved.

    local_scale: ℓ of `ebmkit.data.summary.local_scale`, the typical distance between
    neighbouring data points; None where it is not measured (images).
    """

    local_scale: float | None = None
