"""DRL (Gao et al., ICLR 2021) as a recipe. Formulas: specs/drl.md; 2D transfer: its §11.

Every formula is the paper's code: T = 6, K = 30, f = g/s_t² with s_t² = b² c_t σ²_{t+1} used
as the Langevin step too, σ_1/σ_{t+1} weights on the network output, top level untethered,
chain from x_{t+1}, λ = 0.99 when generating. For 2D the preset changes scale knobs only:

* the step rule of CDRL's 2D code, c_t = 1/σ̄_0 and b² = 2e-3 (s_t ≈ 0.45 σ_{t+1} on this schedule), instead
  of the image rule c_t = σ̄_t/σ̄_0, b² = 2e-4. With the image rule s_0² = 2.1e-5: the level-0
  chain hardly moves and E(·, 0) = −g/s_0² is so sharp that its density is a spike (grid
  log-likelihood −366 nats on checkerboard against −3.47 true); samples are as good either way.
  ``--set energy.b_square=2e-4 --set energy.c_rule=sigma_ratio`` gives the image rule.
* lr 1e-3 with cosine decay (the paper's 1e-4 needs ~10× more iterations), EMA 0.995 with
  warm-up, batch 512, a 128-wide residual MLP.
* the step cap (`NoiseSchedule.langevin_step_sizes`) at κ = 1.6 local scales rather than the
  default 1: DRL's chain was stable on 25gaussians' narrow modes at 1.6 for three seeds (one of
  three blew up at 2.5), and at 1.6 the cap leaves every other built-in set's steps as they were.
"""

from __future__ import annotations

from ebmkit.recipes.base import TOY_THREADS, Recipe
from ebmkit.registry import RECIPES


@RECIPES.register("drl")
def drl() -> Recipe:
    """Diffusion Recovery Likelihood: conditional Langevin at each of T = 6 levels."""
    return Recipe.create(
        name="drl",
        description="Diffusion Recovery Likelihood (Gao et al., ICLR 2021), 2D preset",
        data="8gaussians",
        schedule={"name": "drl", "num_levels": 6},
        network={"name": "mlp", "width": 128, "depth": 3, "embedding": "sinusoidal"},
        energy={"name": "drl", "b_square": 2e-3, "c_rule": "constant", "step_cap": 1.6},
        sampler={"name": "langevin", "n_steps": 30, "noise_scale": 1.0, "generate_noise_scale": 0.99},
        divergence={"name": "recovery_likelihood", "weighting": "sigma_ratio", "contrast": "network"},
        train={"threads": TOY_THREADS, "steps": 1800, "batch_size": 512, "lr": 1e-3, "eps": 1e-7, "warmup": 100,
               "lr_schedule": "cosine", "grad_clip": 1.0, "ema_decay": 0.995,
               "checkpoint_every": 200, "eval_every": 0},
    )
