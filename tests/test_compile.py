"""train.compile (`ebmkit train --compile`): the same training, through torch.compile."""

import pytest
import torch

from ebmkit import Recipe
from ebmkit.model import EnergyModel
from ebmkit.training import Trainer, TrainingError
from helpers import assert_same_learned_energy

TINY = {"network.width": 32, "network.depth": 1, "sampler.n_steps": 5, "train.batch_size": 64, "train.steps": 6,
        "train.threads": 1, "train.lr": 1e-3, "train.warmup": 0}


@pytest.mark.slow
def test_compiled_training_learns_what_eager_training_learns(tmp_path):
    models = {}
    for compiled in (False, True):
        recipe = Recipe.from_name("drl").override({**TINY, "train.compile": compiled})
        trainer = Trainer(recipe, tmp_path / str(compiled), progress=False)
        models[compiled] = trainer.fit()
        # compiled in place: the parameter names, hence the checkpoint files, are the eager ones
        assert (trainer.model.energy._compiled_call_impl is not None) == compiled
    torch.manual_seed(0)
    init = EnergyModel(Recipe.from_name("drl").override(TINY), (2,)).eval()
    eager, compiled = models[False], models[True]
    assert eager.state_dict().keys() == compiled.state_dict().keys()
    assert_same_learned_energy(eager, compiled, init)
    s_eager, s_compiled, s_init = (m.generate(seeds=range(200)) for m in (eager, compiled, init))
    assert (s_compiled - s_eager).abs().max() <= 1e-3 * (s_eager - s_init).abs().max()


def test_compile_refuses_a_gradient_penalty(tmp_path):
    recipe = Recipe.from_name("ddaebm").override({"train.compile": True, "train.steps": 1})
    with pytest.raises(TrainingError, match="train.compile: divergence 'jeffrey' backpropagates through a gradient"):
        Trainer(recipe, tmp_path / "run", progress=False).fit()
