"""The plugin's components pass ebmkit's contracts, so they work in any recipe."""

import torch

from ebmkit.testing import NetworkContract, SamplerContract

torch.set_num_threads(1)


class TestAnnealedLangevin(SamplerContract):
    spec = {"name": "annealed_langevin", "n_steps": 3, "final_noise_ratio": 0.5}


class TestFourierMLP(NetworkContract):
    spec = {"name": "fourier_mlp", "features": 8, "width": 16, "depth": 1}


def test_no_cooling_is_the_builtin_langevin():
    """r = 1 gives the same chain as ebmkit's `langevin`, draw for draw."""
    from ebmkit import Recipe
    from ebmkit.data import DATASETS
    from ebmkit.model import EnergyModel

    recipe = Recipe.from_name("drl").override({"network.width": 16, "network.depth": 1,
                                               "sampler": {"name": "langevin", "n_steps": 4}})
    torch.manual_seed(0)
    builtin = EnergyModel(recipe, (2,))
    torch.manual_seed(0)
    annealed = EnergyModel(recipe.override({"sampler": {"name": "annealed_langevin", "n_steps": 4,
                                                        "final_noise_ratio": 1.0}}), (2,))
    data = DATASETS.build("8gaussians").sample(16, generator=torch.Generator().manual_seed(0))
    batch = builtin.divergence.training_batch(data, generator=torch.Generator().manual_seed(1))
    a = builtin.sampler.sample(batch, builtin.energy, generator=torch.Generator().manual_seed(2)).negatives
    b = annealed.sampler.sample(batch, annealed.energy, generator=torch.Generator().manual_seed(2)).negatives
    torch.testing.assert_close(a, b, rtol=0, atol=0)
