"""The training step is a plan the divergence declares (DESIGN.md, "One training step"): a method
without negatives never calls the sampler; n critic steps per generator step are n + 1 updates,
each built after the previous one has stepped; a plugin written against the interface before
the sample record still trains, through an adapter that says what to change."""

import pytest
import torch

from ebmkit import Recipe
from ebmkit.compat import InterfaceWarning
from ebmkit.divergences import Divergence, Jeffrey
from ebmkit.registry import DIVERGENCES, SAMPLERS, Options
from ebmkit.samplers import LangevinSampler
from ebmkit.training import Trainer
from ebmkit.types import LossOutput, TrainingBatch, Update


class ScoreMatching(Divergence):
    """Denoising score matching on the level-0 energy: no negatives (a test component)."""

    needs_negatives = False

    class Options(Options):
        sigma: float = 0.1

    @property
    def differentiates_twice(self) -> bool:
        return True

    def training_batch(self, x0, generator=None):
        level = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        return TrainingBatch(positives=x0, condition=x0, level=level, data=x0)

    def dsm_loss(self, batch, energy, generator):
        noise = torch.randn(batch.positives.shape, generator=generator)
        sigma = self.config.sigma
        x = (batch.positives + sigma * noise).requires_grad_(True)
        (score,) = torch.autograd.grad(-energy(x, batch.level).sum(), x, create_graph=True)
        loss = (score + noise / sigma).pow(2).sum(1).mean()  # ∇ log p(x̃ | x) = −(x̃ − x)/σ²
        return LossOutput(loss, {"dsm": loss.detach()})

    def plan(self, batch, record, energy, sampler, generator=None):
        assert record is None  # nothing was sampled
        yield Update("energy", lambda: self.dsm_loss(batch, energy, generator), "score matching ({divergence})",
                     loss_key="loss", grad_key="grad_norm")


class ThreeCritics(Jeffrey):
    """DDAEBM's Jeffrey divergence with three energy steps per generator step (a test component)."""

    def plan(self, batch, record, energy, sampler, generator=None):
        for _ in range(3):
            yield Update("energy", lambda: self.energy_loss(batch, record.negatives, energy), "critic ({divergence})",
                         loss_key="loss", grad_key="grad_norm")
        yield Update("sampler", lambda: self.sampler_loss(batch, record, energy, sampler, generator=generator),
                     "generator ({divergence} on {sampler})", frozen=(energy,))


@pytest.fixture
def registered():
    names = {"score_matching_for_tests": ScoreMatching, "three_critics_for_tests": ThreeCritics}
    for name, cls in names.items():
        DIVERGENCES.register(name)(cls)
    yield names
    for name in names:
        DIVERGENCES._builtin.pop(name)


def _small(name, **changes):
    return Recipe.from_name(name).override({"train.steps": 20, "train.batch_size": 64, "train.threads": 1,
                                            "train.eval_every": 0, "train.log_every": 10, **changes})


def test_a_divergence_without_negatives_never_calls_the_sampler(registered, tmp_path, monkeypatch):
    calls = []
    original = LangevinSampler.sample
    monkeypatch.setattr(LangevinSampler, "sample", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    recipe = _small("drl", divergence="score_matching_for_tests")
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    trainer.fit()
    assert calls == []
    first, last = trainer.history[0]["dsm"], trainer.history[-1]["dsm"]
    assert last < first  # it trained: the score matching loss fell
    Trainer(_small("drl", **{"train.steps": 1}), tmp_path / "control", progress=False).fit()
    assert calls == [1]  # the count works: DRL's recovery likelihood samples once per step


def test_three_critic_steps_per_generator_step(registered, tmp_path):
    recipe = _small("ddaebm", divergence="three_critics_for_tests")
    trainer = Trainer(recipe.override({"train.steps": 2}), tmp_path / "run", progress=False)
    trainer.fit()
    steps = {name: {int(s["step"]) for s in opt.state.values()} for name, opt in trainer.optimizers.items()}
    assert steps == {"energy": {6}, "sampler": {2}}  # two iterations: 3 + 3 energy steps, 1 + 1 generator steps


def test_each_update_is_built_after_the_previous_one_stepped(registered, tmp_path):
    """The second critic's loss reads the energy the first one left: the plan is lazy."""
    seen = []
    original = ThreeCritics.energy_loss

    def energy_loss(self, batch, negatives, energy):
        seen.append(next(energy.parameters()).detach().clone())
        return original(self, batch, negatives, energy)

    ThreeCritics.energy_loss = energy_loss
    try:
        Trainer(_small("ddaebm", divergence="three_critics_for_tests").override({"train.steps": 1}),
                tmp_path / "run", progress=False).fit()
    finally:
        ThreeCritics.energy_loss = original
    assert len(seen) == 3 and not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


OLD_PLUGIN = '''
from ebmkit.samplers import CooperativeSampler

class OldCooperative(CooperativeSampler):
    """The cooperative sampler written against the interface before the sample record."""

    def sample(self, batch, energy, generator=None):
        self._stash = self.propose(batch.condition, batch.level, generator)
        return self.refiner.refine(self._stash, batch.condition, batch.level, energy,
                                   self.refiner.config.noise_scale, generator)

    def loss(self, batch, negatives, energy, generator=None):
        return LossOutput((negatives.detach() - self._stash).flatten(1).pow(2).sum(1).mean())
'''


def test_a_sampler_written_against_the_old_interface_trains_with_a_warning(tmp_path):
    namespace = {}
    exec(OLD_PLUGIN, {"LossOutput": LossOutput, "__name__": "old_plugin"}, namespace)
    SAMPLERS.register("old_cooperative_for_tests")(namespace["OldCooperative"])
    try:
        recipe = _small("cdrl", sampler={"name": "old_cooperative_for_tests"})
        with pytest.warns(InterfaceWarning, match="docs/plugins.md, 'Migrating'") as caught:
            trainer = Trainer(recipe, tmp_path / "run", progress=False)
            trainer.fit()
    finally:
        SAMPLERS._builtin.pop("old_cooperative_for_tests")
    said = sorted({str(w.message).split(": ", 1)[1] for w in caught if w.category is InterfaceWarning})
    assert said == [
        "loss(batch, negatives, energy, generator) takes the SampleRecord instead of the negatives; it works through "
        "an adapter for now (docs/plugins.md, 'Migrating')",
        "sample() returns a SampleRecord(negatives, saved) instead of the negatives; it works through an adapter for "
        "now (docs/plugins.md, 'Migrating')"]
    assert {int(s["step"]) for s in trainer.optimizers["sampler"].state.values()} == {20}  # its loss stepped it


OLD_DIVERGENCE = '''
from ebmkit.divergences import RecoveryLikelihood

class OldRegression(RecoveryLikelihood):
    """Recovery likelihood whose initializer regresses onto the negatives, written against the
    interface before the sample record (sampler_loss took the negatives)."""

    def sampler_loss(self, batch, negatives, energy, sampler, generator=None):
        mean = sampler.proposal_mean(batch.condition, batch.level)
        return LossOutput((mean - negatives.detach()).flatten(1).pow(2).sum(1).mean())
'''


def test_a_divergence_written_against_the_old_interface_trains_with_a_warning(tmp_path):
    namespace = {}
    exec(OLD_DIVERGENCE, {"LossOutput": LossOutput, "__name__": "old_plugin"}, namespace)
    DIVERGENCES.register("old_regression_for_tests")(namespace["OldRegression"])
    try:
        recipe = _small("cdrl", divergence={"name": "old_regression_for_tests"})
        with pytest.warns(InterfaceWarning, match=r"sampler_loss\(batch, negatives, energy, sampler, generator\) "
                                                  "takes the SampleRecord instead of the negatives"):
            trainer = Trainer(recipe, tmp_path / "run", progress=False)
            trainer.fit()
    finally:
        DIVERGENCES._builtin.pop("old_regression_for_tests")
    assert {int(s["step"]) for s in trainer.optimizers["sampler"].state.values()} == {20}
