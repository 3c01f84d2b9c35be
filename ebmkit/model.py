"""`EnergyModel`: the built components of a recipe, as one module to train, sample and score."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ebmkit.registry import DIVERGENCES, ENERGIES, NETWORKS, SAMPLERS, SCHEDULES, ComponentError


class EnergyModel(nn.Module):
    """Schedule + energy (network inside) + sampler + divergence, assembled from a recipe.

    ``shape`` is the shape of one data point, e.g. ``(2,)``.
    """

    def __init__(self, recipe, shape: tuple[int, ...]):
        super().__init__()
        self.recipe, self.shape = recipe, tuple(shape)
        self.schedule = SCHEDULES.build(recipe.schedule)
        dim = math.prod(self.shape)
        energy_cls = ENERGIES.get(recipe.energy["name"]).obj
        network = NETWORKS.build(recipe.network, dim=dim, num_levels=self.schedule.num_levels,
                                 out_dim=dim if energy_cls.network_output == "data" else 1)
        self.energy = ENERGIES.build(recipe.energy, network=network, schedule=self.schedule)
        self.divergence = DIVERGENCES.build(recipe.divergence, schedule=self.schedule)
        self.sampler = SAMPLERS.build(recipe.sampler, schedule=self.schedule, shape=self.shape, energy=self.energy,
                                      data_energy=self.divergence.data_energy)
        if self.sampler.needs_generator_objective and not self.divergence.trains_generators:
            raise ComponentError(
                f"sampler '{recipe.sampler['name']}' is trained by the divergence's generator objective, "
                f"but divergence '{recipe.divergence['name']}' has none; use one of: "
                + ", ".join(n for n in DIVERGENCES.names() if DIVERGENCES.get(n).obj.trains_generators)
            )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None, batch_size: int = 10_000) -> Tensor:
        """n samples from the prior through the sampler's full chain."""
        chunks = []
        for start in range(0, n, batch_size):
            chunks.append(self.sampler.generate(min(batch_size, n - start), self.energy, generator))
        return torch.cat(chunks)

    def data_energy(self, x: Tensor) -> Tensor:
        """E of clean data: exp(−data_energy) is the model's unnormalised density of x."""
        return self.divergence.data_energy(self.energy, x)

    # -- files --------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, weights: str = "model.safetensors") -> "EnergyModel":
        """Rebuild a trained model from a run directory (``config.json`` + safetensors weights)."""
        from ebmkit.recipes import Recipe
        from ebmkit.training.checkpoint import CheckpointError, load_tensors

        run_dir = Path(run_dir)
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"'{run_dir}' is not an ebmkit run directory: config.json not found")
        config = json.loads(config_path.read_text())
        recipe = Recipe.create(**config["recipe"])
        model = cls(recipe, tuple(config["shape"]))
        state = load_tensors(run_dir / weights)
        model.load_state_dict(state, strict=True)
        return model.eval()
