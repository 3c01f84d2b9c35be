"""A single-level recipe has no noise schedule at all (DESIGN.md, "One training step"), and a
sampler may start its chains from a declared source distribution (`ebmkit.samplers.sources`):
what persistent CD and Energy Matching need from the core, shown here with test components."""

import json
import re

import pytest
import torch
from pydantic import Field

import ebmkit.random as rnd
from ebmkit import Recipe
from ebmkit.divergences import Divergence
from ebmkit.model import EnergyModel
from ebmkit.random import PerSampleGenerator
from ebmkit.recipes import RecipeError
from ebmkit.registry import DIVERGENCES, SAMPLERS, Options
from ebmkit.samplers import Sampler
from ebmkit.samplers.base import SamplerOptions
from ebmkit.samplers.sources import Source, SourceOptions
from ebmkit.schedules.vp import VPSchedule
from ebmkit.training import Trainer
from ebmkit.types import LossOutput, SampleRecord, TrainingBatch


def _level0(x):
    return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)


class ShortRun(Sampler):
    """K unadjusted Langevin steps on E(x, 0) from the source (a test component)."""

    needs_schedule = False

    class Options(SamplerOptions, SourceOptions):
        n_steps: int = Field(10, ge=1)
        step_size: float = Field(0.01, gt=0)

    def chain(self, n, energy, generator):
        x = self.start(n, generator=generator, device=next(energy.parameters()).device)
        for _ in range(self.config.n_steps):
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x, _level0(x)).sum(), x)
            x = x - 0.5 * self.config.step_size * grad + self.config.step_size ** 0.5 * rnd.randn_like(x, generator)
        return x.detach()

    def sample(self, batch, energy, generator=None):
        return SampleRecord(self.chain(batch.positives.shape[0], energy, generator))

    def generate(self, n, energy, generator=None):
        with torch.enable_grad():
            return self.chain(n, energy, generator)


class Contrastive(Divergence):
    """E(x⁺) − E(x⁻) on clean data, with a small energy-magnitude penalty (a test component)."""

    needs_schedule = False

    class Options(Options):
        alpha: float = 0.1

    def training_batch(self, x0, generator=None):
        return TrainingBatch(positives=x0, condition=x0, level=_level0(x0), data=x0)

    def energy_loss(self, batch, negatives, energy):
        pos, neg = energy(batch.positives, batch.level), energy(negatives, batch.level)
        loss = pos.mean() - neg.mean() + self.config.alpha * (pos.pow(2).mean() + neg.pow(2).mean())
        return LossOutput(loss)


@pytest.fixture
def registered():
    SAMPLERS.register("short_run_for_tests")(ShortRun)
    DIVERGENCES.register("contrastive_for_tests")(Contrastive)
    yield
    SAMPLERS._builtin.pop("short_run_for_tests")
    DIVERGENCES._builtin.pop("contrastive_for_tests")


def _single_level(**changes):
    return Recipe.from_name("drl").override({
        "schedule": None, "energy": "scalar", "sampler": "short_run_for_tests", "divergence": "contrastive_for_tests",
        "train.steps": 30, "train.batch_size": 64, "train.threads": 1, "train.eval_every": 0, "train.warmup": 0,
        **changes})


def test_a_recipe_without_a_schedule_trains_saves_and_loads(registered, tmp_path):
    recipe = _single_level(**{"sampler.source.name": "uniform", "sampler.source.low": -4.0, "sampler.source.high": 4.0})
    assert recipe.schedule is None
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    model = trainer.fit()
    assert model.schedule is None
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"]["schedule"] is None and "schedule" not in config["provenance"]
    assert config["recipe"]["sampler"]["source"] == {"name": "uniform", "std": 1.0, "low": -4.0, "high": 4.0}
    again = EnergyModel.from_run(tmp_path / "run")
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(again.generate(50, generator=g()), model.generate(50, generator=g()))
    assert torch.isfinite(again.data_energy(torch.zeros(4, 2))).all()


def test_a_component_that_needs_levels_is_refused_without_a_schedule(registered):
    with pytest.raises(RecipeError) as err:
        Recipe.from_name("drl").override({"schedule": None})
    message = str(err.value)
    assert "\n" not in message.strip()
    assert "the recipe has no schedule, but energy 'drl' works on a noise schedule's levels" in message
    assert re.search(r"use a energy that works without one: [^;|]*scalar", message)
    assert "sampler 'langevin'" in message and "divergence 'recovery_likelihood'" in message
    assert "short_run_for_tests" in message and "contrastive_for_tests" in message


def test_sources_draw_what_they_say():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    u = Source(name="uniform", low=-2.0, high=3.0).draw((20_000, 2), generator=g())
    assert -2.0 <= float(u.min()) and float(u.max()) < 3.0
    assert abs(float(u.mean()) - 0.5) < 0.05 and abs(float(u.var()) - 25 / 12) < 0.1  # (b − a)²/12
    n = Source(name="normal", std=0.5).draw((20_000, 2), generator=g())
    assert abs(float(n.std()) - 0.5) < 0.01
    schedule = VPSchedule(VPSchedule.Options())
    prior = Source().draw((8, 2), schedule, generator=g())
    assert torch.equal(prior, schedule.prior_sample((8, 2), generator=g()))
    assert torch.equal(Source().draw((8, 2), generator=g()), torch.randn((8, 2), generator=g()))
    with pytest.raises(ValueError, match=r"high \(1.0\) must exceed low \(2.0\)"):
        Source(name="uniform", low=2.0, high=1.0)


def test_a_uniform_source_draws_per_sample_whatever_the_batch():
    source = Source(name="uniform")
    whole = source.draw((4, 3), generator=PerSampleGenerator([5, 6, 7, 8]))
    part = source.draw((2, 3), generator=PerSampleGenerator([7, 8]))
    assert torch.equal(whole[2:], part)


def test_a_sampler_without_a_declared_source_starts_from_the_prior(registered):
    sampler = SAMPLERS.build({"name": "langevin", "b_square": 2e-4, "local_scale": None},
                             schedule=VPSchedule(VPSchedule.Options()), shape=(2,))
    starts = sampler.start(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(starts, torch.randn((5, 2), generator=torch.Generator().manual_seed(1)))
    with pytest.raises(RecipeError, match="source"):
        Recipe.from_name("drl").override({"sampler.source": "uniform"})
