"""CDRL (Zhu et al., ICLR 2024) as a recipe. Formulas: specs/cdrl.md; 2D transfer: its §11.

DRL's energy and loss with CDRL's practical designs, each a component option:
the truncated-cosine log-SNR schedule (λ ∈ [−5.1, 9.8], T = 6), shared-noise training pairs
(`divergence.shared_noise`), the cooperative initializer refined by K = 15 Langevin steps
(`sampler`), and the 2D step rule of the authors' toy code (c = 1/σ̄_0, b² = 2e-3; no Tweedie
step in 2D, `sampler.denoise` turns it on). Scale knobs for a CPU budget as in specs/cdrl.md
§11: both networks at lr 1e-3 (the toy code's 3e-6 / 1e-5 need ~100k iterations), cosine
decay, EMA 0.995 with warm-up, batch 512, MLPs of width 128 (energy) and 64 (initializer).
The Langevin step is capped at the default κ = 1 local scale (`NoiseSchedule.langevin_step_sizes`):
on 25gaussians CDRL's chain blew up at κ = 1.6 and 1.2 (its initializer drives the narrow modes'
masses apart and deepens them: benchmarks/mode_mass.md) and not at 1; elsewhere the cap trims
s_0 from 0.131 to 0.093 (pinwheel), 0.116 (swissroll) and 0.122 (8gaussians), and leaves checkerboard's.
"""

from __future__ import annotations

from ebmkit.recipes.base import TOY_THREADS, Recipe
from ebmkit.registry import RECIPES


@RECIPES.register("cdrl")
def cdrl() -> Recipe:
    """Cooperative DRL: an initializer proposes, 15 Langevin steps refine, per noise level."""
    return Recipe.create(
        name="cdrl",
        description="Cooperative Diffusion Recovery Likelihood (Zhu et al., ICLR 2024), 2D preset",
        data="checkerboard",
        schedule={"name": "cosine_logsnr", "num_levels": 6, "logsnr_min": -5.1, "logsnr_max": 9.8},
        network={"name": "mlp", "width": 128, "depth": 3, "embedding": "sinusoidal"},
        energy={"name": "drl", "b_square": 2e-3, "c_rule": "constant"},
        sampler={
            "name": "cooperative",
            "initializer": {"name": "mlp", "width": 64, "depth": 2, "activation": "silu"},
            "refine": {"name": "langevin", "n_steps": 15, "noise_scale": 1.0, "generate_noise_scale": 1.0},
            "initial_noise": True,
            "denoise": False,
        },
        divergence={"name": "recovery_likelihood", "weighting": "sigma_ratio", "contrast": "network",
                    "shared_noise": True},
        train={"threads": TOY_THREADS,
               "steps": 4000, "batch_size": 512, "lr": 1e-3, "sampler_lr": 1e-3, "warmup": 100,
               "lr_schedule": "cosine", "grad_clip": 1.0, "ema_decay": 0.995, "checkpoint_every": 500},
    )
