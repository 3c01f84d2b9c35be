"""The divergence watch: the first step at which training left a sane range.

A non-finite loss is one way a run goes wrong; a finite blow-up is the other (a chain whose
negatives run to 1e21 keeps every loss finite for a while). Energies have arbitrary offsets and
per-level scales, so nothing here judges an energy's value. Three quantities are watched, each
against the run's own data or history:

* a loss that is not finite;
* the negatives' size: max_i ‖x⁻_i‖ over max_i ‖x⁺_i‖ of the same batch above
  ``train.max_negative_ratio`` (negatives are meant to look like the positives they contrast);
* a gradient norm (before clipping) above ``train.max_grad_growth`` times the median of the
  same update's norms over the previous ``train.grad_growth_window`` steps.

Everything is recorded on the device without a sync; `check` reads it at log and checkpoint
steps, agrees on the earliest problem across data-parallel ranks, and says what it was.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import Tensor

NEVER = 2**62  # "nothing found yet"
WARMUP = 100  # gradient norms seen (at most the window) before the growth test starts: they set the scale


@dataclass(frozen=True)
class Problem:
    step: int
    message: str  # "<what> <did what> at step N …", one line


class Watch:
    def __init__(self, config, device: torch.device):
        self.max_ratio, self.max_growth, self.window = config.max_negative_ratio, config.max_grad_growth, \
            config.grad_growth_window
        self.device = device
        self._first: dict[str, Tensor] = {}  # quantity → first bad step (NEVER if none), on the device
        self._value: dict[str, Tensor] = {}  # quantity → its value at that step
        self._norms: dict[str, list[tuple[int, Tensor]]] = {}  # since the last check
        self._history: dict[str, list[float]] = {}  # earlier norms, at most `window` per update

    def _record(self, key: str, bad: Tensor, value: Tensor, step: int) -> None:
        first = self._first.get(key)
        if first is None:
            first = torch.full((), NEVER, device=bad.device)
            self._value[key] = torch.zeros((), device=bad.device)
        fresh = bad & (first == NEVER)
        self._first[key] = torch.where(fresh, step, first)
        self._value[key] = torch.where(fresh, value.detach().float(), self._value[key])

    def loss(self, what: str, loss: Tensor, step: int) -> None:
        """``what`` (e.g. "energy loss (recovery_likelihood)") at ``step``: flagged if not finite."""
        value = loss.detach().float()
        self._record(f"loss|{what}", ~torch.isfinite(value), value, step)

    def negatives(self, who: str, negatives: Tensor, positives: Tensor, step: int) -> None:
        """``who`` (e.g. "sampler 'langevin'") drew ``negatives`` for ``positives``."""
        if self.max_ratio is None:
            return
        size = negatives.detach().flatten(1).float().norm(dim=1).max()
        ratio = size / positives.detach().flatten(1).float().norm(dim=1).max().clamp_min(1e-12)
        self._record(f"negatives|{who}", ~(ratio <= self.max_ratio), ratio, step)  # NaN counts as bad

    def grad_norm(self, what: str, norm: Tensor, step: int) -> None:
        """The gradient norm of update ``what`` before clipping, tested at the next `check`."""
        if self.max_growth is not None:
            self._norms.setdefault(what, []).append((step, norm.detach().float()))

    def _growth(self) -> list[Problem]:
        found = []
        for what, entries in self._norms.items():
            values = torch.stack([v for _, v in entries]).cpu().tolist()
            history = self._history.setdefault(what, [])
            for (step, _), value in zip(entries, values):
                if value != value or value in (float("inf"), float("-inf")):
                    continue  # an fp16 overflow step, which the loss scaler skips; a bad loss is caught above
                if len(history) >= min(WARMUP, self.window):
                    reference = statistics.median(history)
                    if value > self.max_growth * reference:
                        found.append(Problem(step, f"the gradient norm of the {what} grew to {value:.3g} at step "
                                                   f"{step}, {value / reference:.3g}× its median over the previous "
                                                   f"{len(history)} steps (train.max_grad_growth {self.max_growth:g})"))
                        break
                history.append(value)
            del history[:-self.window]
        self._norms.clear()
        return found

    def check(self, dist) -> Problem | None:
        """The earliest problem since the last check, the same on every rank (None if none)."""
        problems = self._growth()
        keys = sorted(self._first)
        steps = [self._first[k] for k in keys] + [torch.tensor(p.step, device=self.device) for p in problems]
        if not steps:
            return None
        values = {k: float(self._value[k]) for k in keys}
        first = dist.minimum(torch.stack([s.to(self.device) for s in steps]))
        self._first.clear()
        self._value.clear()
        step = int(first.min())
        if step == NEVER:
            return None
        i = int(first.argmin())
        if i >= len(keys):
            return Problem(step, problems[i - len(keys)].message)
        kind, what = keys[i].split("|", 1)
        if kind == "loss":
            return Problem(step, f"{what} became non-finite at step {step}")
        ratio = values[keys[i]]  # this rank's: another rank's negatives may be the ones that blew up
        return Problem(step, f"{what} blew up at step {step}: its negatives' largest norm is {ratio:.3g}× the "
                             f"positives' (train.max_negative_ratio {self.max_ratio:g})")

    def forget(self) -> None:
        """After a rollback: the steps recorded since the checkpoint are abandoned."""
        self._first.clear()
        self._value.clear()
        self._norms.clear()
