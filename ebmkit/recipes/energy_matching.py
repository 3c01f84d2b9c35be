"""Energy Matching (Balcerak et al., NeurIPS 2025) as recipes. Formulas: specs/energy_matching.md;
docs/recipes/energy_matching.md.

One time-independent scalar energy, no noise schedule (`schedule: None`). Two phases: ``warmup``
trains −∇ₓE as the velocity of an OT-coupled flow from N(0, I) to the data (`energy_matching` with
λ_CD = 0: the sampler is never called); ``main`` adds the contrastive term on negatives of the
`tempered_langevin` sampler (noiseless flow up to t = 1, then Langevin at ε_max), with a faster EMA.
Generation integrates the same dynamics from N(0, I) to τ_s.
"""

from __future__ import annotations

from ebmkit.recipes.base import TOY_THREADS, Recipe
from ebmkit.recipes.images import CIFAR10, FMNIST, FMNIST_TRAIN, SMALL_RESNET, _preset
from ebmkit.registry import RECIPES


def _phases(warmup: int, main: int, warmup_ema: float, main_ema: float, main_divergence: dict | None = None) -> list:
    """EM's two runs as phases: the flow alone (λ_CD = 0), then flow + CD with another EMA decay."""
    return [{"name": "warmup", "steps": warmup, "ema_decay": warmup_ema, "divergence": {"lambda_cd": 0.0}},
            {"name": "main", "steps": main, "ema_decay": main_ema, "divergence": main_divergence or {}}]


@RECIPES.register("energy_matching")
def energy_matching() -> Recipe:
    """Energy Matching, 2D: specs/energy_matching.md §8's recommended preset (exact OT, σ = 0; CD with
    λ_CD = 2, no hinge, no trim; K = 100 chain steps of dt = 0.02, ε_max = 0.1, split starts)."""
    return Recipe.create(
        name="energy_matching",
        description="Energy Matching: an OT flow as the gradient of one energy, then contrastive training, 2D preset",
        data="8gaussians",
        schedule=None,
        network={"name": "mlp", "width": 128, "depth": 3, "activation": "silu"},
        energy={"name": "scalar"},
        sampler={"name": "tempered_langevin", "n_steps": 100, "dt": 0.02,
                 "temperature": {"name": "ramp", "epsilon_max": 0.1, "cutoff": 1.0}, "init": "split",
                 "integrator": "heun", "generate_time": 2.0, "generate_dt": 0.01},
        divergence={"name": "energy_matching", "lambda_cd": 2.0, "cd_neg_clamp": None, "cd_trim_fraction": 0.0,
                    "sigma": 0.0, "coupling": {"name": "exact_ot", "resample": True}},
        train={"threads": TOY_THREADS, "batch_size": 256, "lr": 1e-3, "betas": (0.9, 0.95), "warmup": 200,
               "grad_clip": 1.0, "ema_decay": 0.999, "log_every": 100, "checkpoint_every": 500, "eval_every": 0,
               "phases": _phases(3000, 500, 0.999, 0.99)},
    )
