"""Training phases (DESIGN.md, "One training step"): stretches of a run, each a plan with its own
number of steps, learning rates, EMA decay and divergence options.

A run is, in order:

- ``pretrain`` (``train.pretrain_steps`` > 0, a `Sampler.pretrainable` sampler): the sampler's
  own objective on clean data before step 1 (DxMI fine-tunes a DDPM, CDRL regresses its
  initializer), with an optimizer of its own at ``train.pretrain_lr`` that is dropped afterwards,
  no clipping, no warm-up; the EMA starts from its last weights. Its steps are not counted in
  ``train.steps``: the run's step 0 is its end.
- the recipe's ``train.phases``, or one phase ``train`` of ``train.steps`` when it declares none.
  Each runs the divergence's plan over the run's optimizers (their state carries on), with its
  learning rates, EMA decay and divergence options; the warm-up and lr schedule run over the
  whole run, a phase's lr replacing the base lr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from torch import Tensor

from ebmkit.types import Update


@dataclass(frozen=True)
class Phase:
    """One counted phase: steps ``start + 1 … end`` of the run."""

    name: str
    start: int
    end: int
    lr: dict[str, float] = field(default_factory=dict)  # parameter group → its lr in this phase
    ema_decay: float | None = None  # None: train.ema_decay
    divergence: dict[str, Any] = field(default_factory=dict)  # options changed in this phase

    @property
    def steps(self) -> int:
        return self.end - self.start


def phases(train) -> list[Phase]:
    """The counted phases of a run's ``train`` options, in order."""
    if not train.phases:
        return [Phase("train", 0, train.steps)]
    out, start = [], 0
    for p in train.phases:
        lr = {name: value for name, value in (("energy", p.lr), ("sampler", p.sampler_lr)) if value is not None}
        out.append(Phase(p.name, start, start + p.steps, lr, p.ema_decay, dict(p.divergence)))
        start += p.steps
    return out


def phase_at(plan: list[Phase], step: int) -> Phase:
    """The phase that step ``step + 1`` belongs to (the last one past the end)."""
    return next((p for p in plan if step < p.end), plan[-1])


def pretraining_plan(sampler, x0: Tensor, generator=None) -> Iterator[Update]:
    """One step of the ``pretrain`` phase: the sampler's own objective on a clean batch."""
    yield Update("sampler", lambda: sampler.pretrain_loss(x0, generator=generator), "sampler pretraining loss ({sampler})",
                 loss_key="pretrain_loss")
