"""Training phases (`ebmkit.training.phases`): a recipe declares stretches of its run, each with
its own steps, learning rate, EMA decay and divergence options (Energy Matching's flow-only
warm-up, then its contrastive phase); a divergence may draw more than one data batch per step."""

import re

import pytest
import torch

from ebmkit import Recipe
from ebmkit.recipes import RecipeError
from ebmkit.registry import DIVERGENCES, Options
from ebmkit.samplers import LangevinSampler
from ebmkit.training import Trainer
from ebmkit.training.phases import phase_at, phases
from ebmkit.types import LossOutput, TrainingBatch, Update

from test_plan import ScoreMatching


class FlowThenContrast(ScoreMatching):
    """Score matching, plus a contrastive term E(x⁺) − E(x⁻) when its weight is above 0: without
    it the step needs no negatives (a test component shaped like Energy Matching)."""

    class Options(ScoreMatching.Options):
        contrastive_weight: float = 0.0

    @property
    def needs_negatives(self) -> bool:
        return self.config.contrastive_weight > 0

    def loss(self, batch, record, energy, generator):
        out = self.dsm_loss(batch, energy, generator)
        if record is None:
            return out
        contrast = energy(batch.positives, batch.level).mean() - energy(record.negatives, batch.level).mean()
        return LossOutput(out.loss + self.config.contrastive_weight * contrast, out.metrics)

    def plan(self, batch, record, energy, sampler, generator=None):
        yield Update("energy", lambda: self.loss(batch, record, energy, generator), "flow then contrast",
                     loss_key="loss", grad_key="grad_norm")


class TwoBatches(ScoreMatching):
    """Score matching that also reads a second, independent data batch (a test component)."""

    data_batches = 2
    seen: list = []

    def plan(self, batch, record, energy, sampler, generator=None):
        TwoBatches.seen.append((batch.data.clone(), tuple(m.clone() for m in batch.more)))
        yield from super().plan(batch, record, energy, sampler, generator)


@pytest.fixture
def registered():
    names = {"flow_then_contrast_for_tests": FlowThenContrast, "two_batches_for_tests": TwoBatches}
    for name, cls in names.items():
        DIVERGENCES.register(name)(cls)
    yield names
    for name in names:
        DIVERGENCES._builtin.pop(name)


def _phased(phase_list, **changes):
    return Recipe.from_name("drl").override({
        "divergence": "flow_then_contrast_for_tests", "train.batch_size": 32, "train.threads": 1,
        "train.eval_every": 0, "train.log_every": 1, "train.checkpoint_every": 2, "train.ema_warmup": False, "train.warmup": 0, "train.lr_schedule": "constant",
        "train.phases": phase_list, **changes})


TWO_PHASES = [{"name": "flow", "steps": 3, "lr": 1e-3, "ema_decay": 0.0},
              {"name": "contrast", "steps": 3, "lr": 2e-4, "ema_decay": 0.9, "divergence": {"contrastive_weight": 1.0}}]


def test_phases_set_the_run_length_and_follow_each_other(registered):
    recipe = _phased(TWO_PHASES)
    assert recipe.train.steps == 6
    plan = phases(recipe.train)
    assert [(p.name, p.start, p.end) for p in plan] == [("flow", 0, 3), ("contrast", 3, 6)]
    assert [phase_at(plan, s).name for s in range(7)] == ["flow"] * 3 + ["contrast"] * 4
    assert plan[1].lr == {"energy": 2e-4} and plan[1].divergence == {"contrastive_weight": 1.0}
    assert [(p.name, p.steps) for p in phases(Recipe.from_name("drl").train)] == [("train", 1800)]


def test_each_phase_has_its_lr_ema_decay_and_divergence_options(registered, tmp_path, monkeypatch):
    calls, lrs, snapshots = [], [], []
    original = LangevinSampler.sample
    monkeypatch.setattr(LangevinSampler, "sample", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    trainer = Trainer(_phased(TWO_PHASES), tmp_path / "run", progress=False)
    step = Trainer.train_step

    def recorded(self):
        before = [p.detach().clone() for p in self.ema.module.energy.parameters()]
        out = step(self)
        lrs.append(self.optimizers["energy"].param_groups[0]["lr"])
        snapshots.append((before, [p.detach().clone() for p in self.model.energy.parameters()],
                          [p.detach().clone() for p in self.ema.module.energy.parameters()]))
        return out

    monkeypatch.setattr(Trainer, "train_step", recorded)
    trainer.fit()
    assert len(calls) == 3  # the flow phase never sampled; the contrastive phase sampled every step
    assert lrs == [1e-3] * 3 + [2e-4] * 3
    for i, (before, raw, ema) in enumerate(snapshots):
        for b, r, e in zip(before, raw, ema):
            # decay 0: the EMA is the raw weights; decay 0.9: 0.9 · EMA + 0.1 · raw (no warm-up)
            expected = r if i < 3 else 0.9 * b + 0.1 * r
            torch.testing.assert_close(e, expected, rtol=1e-6, atol=1e-7)
    # the exported recipe is the run's: its divergence options are the recipe's, not the last phase's
    assert trainer.model.divergence.config.contrastive_weight == 0.0


def test_a_resumed_run_rejoins_its_phase_bitwise(registered, tmp_path, monkeypatch):
    whole = Trainer(_phased(TWO_PHASES), tmp_path / "whole", progress=False)
    whole.fit()
    step = Trainer.train_step

    def interrupted(self):
        if self.step == 4:  # inside the contrastive phase, one step after the checkpoint of step 4
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_phased(TWO_PHASES), tmp_path / "cut", progress=False).fit()
    monkeypatch.setattr(Trainer, "train_step", step)
    resumed = Trainer(_phased(TWO_PHASES), tmp_path / "cut", resume=True, progress=False)
    resumed.fit()
    assert resumed.phase.name == "contrast"
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, message", [
    ({"train.steps": 10}, "steps is 10 but the phases add up to 6 (3 + 3)"),
    ({"train.phases": [{"name": "a", "steps": 2}, {"name": "a", "steps": 2}]}, "phase names must differ"),
    ({"train.phases": [{"name": "a", "steps": 2, "divergence": {"name": "jeffrey"}}]},
     "a phase changes the divergence's options, not the divergence"),
    ({"train.phases": [{"name": "a", "steps": 2, "divergence": {"sigmaa": 1.0}}]}, "sigmaa"),
    ({"train.phases": [{"name": "a", "steps": 2, "momentum": 0.9}]}, "momentum"),
])
def test_a_malformed_phase_is_refused_in_one_line(registered, change, message):
    with pytest.raises(RecipeError, match=re.escape(message)) as err:
        _phased(TWO_PHASES).override(change)
    assert "\n" not in str(err.value).strip()


def test_a_divergence_can_draw_two_independent_batches(registered, tmp_path):
    TwoBatches.seen.clear()
    recipe = Recipe.from_name("drl").override({
        "divergence": "two_batches_for_tests", "train.steps": 3, "train.batch_size": 16, "train.threads": 1,
        "train.eval_every": 0})
    Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert len(TwoBatches.seen) == 3
    for data, more in TwoBatches.seen:
        assert len(more) == 1 and more[0].shape == data.shape
        assert not torch.equal(more[0], data)
    # the second batch is the data stream's next draw, not a copy of the next step's first
    assert not torch.equal(TwoBatches.seen[0][1][0], TwoBatches.seen[1][0])


def test_the_default_batch_carries_no_second_batch():
    batch = TrainingBatch(positives=torch.zeros(2, 2), condition=torch.zeros(2, 2), level=torch.zeros(2), data=torch.zeros(2, 2))
    assert batch.more == ()


def test_pretraining_is_the_phase_before_step_one(tmp_path):
    recipe = Recipe.from_name("cdrl").override({"train.steps": 2, "train.pretrain_steps": 3, "train.batch_size": 32,
                                                "train.threads": 1, "train.eval_every": 0})
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.fit()
    assert trainer.step == 2
    # the pretraining optimizer was dropped: the sampler's run optimizer stepped twice, not five times
    state = trainer.optimizers["sampler"].state
    assert {int(s["step"]) for s in state.values()} == {2}
