"""Sampler state that is not weights (DESIGN.md, "State and capabilities"): a replay buffer declared
with `Sampler.declare_state` is checkpointed and resumed bit for bit, and is never EMA-averaged,
exported with the model or mistaken for a buffer."""

import pytest
import torch

from ebmkit import EnergyModel, Recipe
from ebmkit.files import read_tensors
from ebmkit.registry import SAMPLERS
from ebmkit.samplers import LangevinSampler
from ebmkit.training import Trainer
from ebmkit.training.checkpoint import load_checkpoint
from ebmkit.types import SampleRecord


class ReplayLangevin(LangevinSampler):
    """Langevin whose chains start halfway to the last step's negatives, kept in a replay buffer
    (a test component: persistent chains in miniature)."""

    def sample(self, batch, energy, generator=None):
        replay = self.declared_state.get("replay")
        start = batch.condition if replay is None or replay.shape != batch.condition.shape \
            else 0.5 * (batch.condition + replay)
        y = self.refine(start, batch.condition, batch.level, energy, self.config.noise_scale, generator)
        self.declare_state("replay", y.detach().clone())
        self.declare_state("count", self.declared_state.get("count", torch.zeros((), dtype=torch.long)) + 1)
        return SampleRecord(y)


@pytest.fixture
def replay():
    SAMPLERS.register("replay_langevin_for_tests")(ReplayLangevin)
    yield
    SAMPLERS._builtin.pop("replay_langevin_for_tests")


def _recipe(steps):
    return Recipe.from_name("drl").override({
        "sampler": {"name": "replay_langevin_for_tests", "n_steps": 3}, "network.width": 16, "train.steps": steps,
        "train.batch_size": 32, "train.checkpoint_every": 2, "train.log_every": 2, "train.eval_every": 0,
        "train.threads": 1, "train.ema_decay": 0.5})


def test_declared_state_resumes_bitwise_and_is_not_weights(replay, tmp_path):
    straight = Trainer(_recipe(4), tmp_path / "straight", progress=False)
    straight.fit()
    Trainer(_recipe(2), tmp_path / "resumed", progress=False).fit()
    resumed = Trainer(_recipe(4), tmp_path / "resumed", resume=True, progress=False)
    resumed.fit()

    state = straight.model.sampler.declared_state
    assert int(state["count"]) == 4 and state["replay"].shape == (32, 2)
    for name, value in state.items():  # the buffer came back from the checkpoint and went on identically
        assert torch.equal(resumed.model.sampler.declared_state[name], value), name
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)

    files, _ = load_checkpoint(tmp_path / "straight" / "checkpoint")
    assert torch.equal(files["optimizer"]["state.sampler.replay"][0], state["replay"])  # one row per rank
    assert all("replay" not in key and "count" not in key for key in files["model"])  # not weights
    assert all("replay" not in key for key in files["ema"])  # never averaged
    assert all("replay" not in key for key in read_tensors(tmp_path / "straight" / "model.safetensors")[0])
    assert "replay" not in dict(straight.model.sampler.named_buffers())
    # the EMA copy holds its own, never updated by training: averaging is for weights only
    assert straight.ema.module.sampler.declared_state == {}
    # a run directory with state still rebuilds the model for generation without it
    model = EnergyModel.from_run(tmp_path / "straight")
    assert model.generate(4, generator=torch.Generator().manual_seed(0)).shape == (4, 2)
