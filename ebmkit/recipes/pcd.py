"""Persistent contrastive divergence (IGEBM, Du & Mordatch 2019; JEM, Grathwohl et al. 2020) as
recipes. Formulas: specs/pcd.md; docs/recipes/pcd.md.

One energy, no noise schedule (`schedule: None`): the `replay` sampler runs K SGLD steps from a
replay buffer of past negatives (ρ of the chains restarted from noise) and `cd` contrasts data
with them, plus α·(E⁺² + E⁻²).
"""

from __future__ import annotations

from ebmkit.recipes.base import TOY_THREADS, Recipe
from ebmkit.recipes.images import CIFAR10, FMNIST, FMNIST_TRAIN, SMALL_RESNET, _preset
from ebmkit.registry import RECIPES


@RECIPES.register("pcd")
def pcd() -> Recipe:
    """Persistent CD, 2D: a replay buffer of Langevin chains at temperature 1 (specs/pcd.md §11.1)."""
    return Recipe.create(
        name="pcd",
        description="Persistent contrastive divergence with a replay buffer (IGEBM / JEM), 2D preset",
        data="8gaussians",
        schedule=None,
        network={"name": "mlp", "width": 128, "depth": 3, "activation": "silu"},
        energy={"name": "scalar"},
        sampler={"name": "replay", "buffer_size": 10_000, "reinit_prob": 0.05, "write_back": "indexed",
                 "source": {"name": "uniform", "low": -4.0, "high": 4.0},
                 "n_steps": 20, "step_size": 5e-3, "noise_std": 0.1, "generate_n_steps": 300},
        divergence={"name": "cd", "alpha": 0.01},
        train={"threads": TOY_THREADS, "steps": 2000, "batch_size": 256, "lr": 1e-3, "betas": (0.0, 0.999),
               "grad_clip": 1.0, "ema_decay": 0.99, "log_every": 100, "checkpoint_every": 500, "eval_every": 0},
    )


@RECIPES.register("pcd_fmnist")
def pcd_fmnist() -> Recipe:
    """Persistent CD on Fashion-MNIST for a CPU: specs/pcd.md §11.2's JEM regime (ρ = 0.05,
    p₀ = U(−1, 1), K = 20, λ = 1, σ_n = 0.01, clamped to [−1, 1]; α = 0.1) on the 16-channel
    ResNet of the other Fashion-MNIST presets, spectrally normalised, with a linear head. The
    spec's 10,000 iterations are cut to 600, which fit a quarter of an hour, and its buffer of
    10,000 to 1,000: at 600 × 64 draws a 10,000-entry buffer is visited under 4 times per entry,
    much of it was still noise at the end, and FD-FMNIST rose from 269 (iteration 100) to 648
    (600) as the samples turned to texture. With 1,000 entries it fell over the run, 361 → 318 →
    288 at iterations 200, 400, 600, generating with 200 steps from noise."""
    return _preset(pcd(), "pcd_fmnist", "Persistent contrastive divergence, Fashion-MNIST CPU preset", {
        "data": FMNIST, "network": {**SMALL_RESNET, "head": "linear", "spectral_norm": True},
        "sampler": {"name": "replay", "buffer_size": 1000, "reinit_prob": 0.05, "write_back": "indexed",
                    "source": {"name": "uniform", "low": -1.0, "high": 1.0}, "n_steps": 20, "step_size": 1.0,
                    "noise_std": 0.01, "clamp": (-1.0, 1.0), "generate_n_steps": 200},
        "divergence": {"name": "cd", "alpha": 0.1},
        "train": {"threads": None, "steps": 600, "batch_size": 64, "lr": 1e-4, "betas": (0.0, 0.999), "warmup": 50,
                  "grad_clip": 1.0, "ema_decay": 0.99, "checkpoint_every": 200, "eval_every": 200, **FMNIST_TRAIN},
    })


@RECIPES.register("pcd_cifar10")
def pcd_cifar10() -> Recipe:
    """IGEBM's unconditional CIFAR-10 run (openai/ebm_code_release README; specs/pcd.md §4-§6),
    in ebmkit's [−1, 1] pixels: IGEBM's x ∈ [0, 1] is (x' + 1)/2, so its step 10, noise 0.005 and
    gradient clip 0.01 become λ = 40, σ_n = 0.01 and a clip of 0.005, its clamp [0, 1] is
    [−1, 1] and its U(0, 1) noise U(−1, 1). K = 60 with the noise added before the gradient,
    ρ = 0.05, FIFO write-back into 10,000 entries; α = 1; Adam 3e-4, β = (0, 0.999), batch 128.
    The network is ResNet32Large's shape: 9 residual blocks at 128, 256 and 512 channels,
    spectral norm on the convolutions, ReLU, sum-pool and a linear head (ours has no dropout and
    DRL's block, see docs/recipes/pcd.md). IGEBM runs until stopped: the 100,000 steps are ours."""
    return _preset(pcd(), "pcd_cifar10", "Persistent contrastive divergence, CIFAR-10 (IGEBM's setting)", {
        "data": {**CIFAR10, "hflip": False},  # IGEBM's --augment is off (train.py:94, 537)
        "network": {"name": "resnet", "channels": 128, "channel_mult": [1, 2, 4], "num_res_blocks": 3,
                    "head": "linear", "spectral_norm": True},
        "sampler": {"name": "replay", "buffer_size": 10_000, "reinit_prob": 0.05, "write_back": "fifo",
                    "source": {"name": "uniform", "low": -1.0, "high": 1.0}, "n_steps": 60, "step_size": 40.0,
                    "noise_std": 0.01, "grad_clip_value": 0.005, "clamp": (-1.0, 1.0), "noise_before_grad": True,
                    "generate_n_steps": None},
        "divergence": {"name": "cd", "alpha": 1.0},
        "train": {"threads": None, "steps": 100_000, "batch_size": 128, "lr": 3e-4, "betas": (0.0, 0.999),
                  "warmup": 0, "grad_clip": None, "ema_decay": 0.0, "ema_warmup": False, "checkpoint_every": 5000,
                  "log_every": 100, "eval_every": 0},
    })
