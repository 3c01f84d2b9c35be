"""The periodic evaluation during training: ``train.eval_metric`` of the EMA model on fixed
validation draws, which ``train.keep_best`` selects a checkpoint on.

The seeds differ from `ebmkit eval`'s (seed … seed + 4): scoring the selected checkpoint on the
draws it was selected on would flatter it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ebmkit.metrics import sliced_wasserstein
from ebmkit.training.plots import save_image_grid

VALIDATION_SEED_OFFSET = 1000


class Validation:
    """SW of n samples to n fresh data points, or FD-FMNIST to the Fashion-MNIST test set; for
    images also a grid of the first 64 samples in samples/step_NNNNNN.png."""

    def __init__(self, recipe, dataset, device: torch.device, run_dir: Path):
        self.recipe, self.dataset, self.device, self.run_dir = recipe, dataset, device, run_dir
        self.metric = recipe.train.eval_metric
        self.fd_fmnist = None  # the scorer, loaded at the first evaluation that needs it
        if self.metric == "fd_fmnist":
            from ebmkit.metrics.fmnist import SHAPE

            if dataset.shape != SHAPE:  # fail before training, not at the first evaluation
                raise ValueError(f"train.eval_metric 'fd_fmnist' scores 28×28 grey images; this data has points of "
                                 f"shape {dataset.shape}: use 'sw'")

    def samples(self, model, n: int) -> torch.Tensor:
        """n samples of ``model`` on the validation seed, on the CPU."""
        seed = self.recipe.eval.seed + VALIDATION_SEED_OFFSET
        return model.generate(n, generator=torch.Generator(self.device).manual_seed(seed)).cpu()

    def grid(self, step: int) -> Path | None:
        """Where `score` saves the grid of samples of ``step`` (images only)."""
        return self.run_dir / "samples" / f"step_{step:06d}.png" if self.dataset.is_image else None

    def score(self, samples: torch.Tensor, step: int) -> float:
        if (grid := self.grid(step)) is not None:
            grid.parent.mkdir(exist_ok=True)
            save_image_grid(samples[:64], grid)
        if self.metric == "fd_fmnist":
            if self.fd_fmnist is None:
                from ebmkit.metrics.fmnist import FDFMNIST

                self.fd_fmnist = FDFMNIST.for_data(self.recipe.data, device=self.device)
            return self.fd_fmnist(samples)
        seed = self.recipe.eval.seed + VALIDATION_SEED_OFFSET
        data = self.dataset.sample(len(samples), generator=torch.Generator().manual_seed(seed + 1))
        return sliced_wasserstein(samples.flatten(1), data.flatten(1), n_projections=self.recipe.eval.n_projections,
                                  generator=torch.Generator().manual_seed(seed + 2))
