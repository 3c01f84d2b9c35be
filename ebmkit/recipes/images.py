"""Image presets of the four recipes: `<recipe>_cifar10`, the paper's CIFAR-10 setting (a GPU and
the data set in ~/.cache/ebmkit/cifar10), and `<recipe>_fmnist`, a small model that trains on
Fashion-MNIST on a CPU in about a quarter of an hour (benchmarks/fmnist.md has what it reaches).

Each CIFAR-10 preset is the 2D preset with the paper's image components and training options
(specs/*.md, image sections); where our networks differ from the released code it is said
next to the network. The Fashion-MNIST presets keep each algorithm and shrink what costs time:
16–32-channel networks at 28×28 and 14×14, fewer Langevin steps, small batches; where one needs
more than that to learn in minutes (`cdrl_fmnist`), its docstring says what and why.
"""

from __future__ import annotations

from ebmkit.recipes.base import Recipe
from ebmkit.recipes.cdrl import cdrl
from ebmkit.recipes.ddaebm import ddaebm_paper
from ebmkit.recipes.drl import drl
from ebmkit.recipes.dsm import dsm
from ebmkit.recipes.dxmi import dxmi
from ebmkit.registry import RECIPES


def _preset(base: Recipe, name: str, description: str, changes: dict) -> Recipe:
    recipe = base.override({"description": description, **changes})
    return recipe.model_copy(update={"name": name})


# -- networks -----------------------------------------------------------------------------------
def drl_ebm(blocks: int = 8, temb_activation: bool = False) -> dict:
    """DRL's CIFAR-10 EBM (specs/drl.md §3): 128 channels, (1,2,2,2), avg-pool, SN, temb head.
    Ours embeds the level as 1000·t/T (DRL: the integer t) and starts γ-scaled convs at the
    default init (DRL: ~0 with a lower-bound SN)."""
    return {"name": "resnet", "channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": blocks,
            "embedding_dim": 128, "temb_dim": 512, "temb_activation": temb_activation, "head": "temb",
            "spectral_norm": True}


def ncsnpp(channels: int = 128, **extra) -> dict:
    """The DDPM++/NCSN++ U-Net of DDAEBM's energy and DDGAN's generator (CIFAR: nf 128,
    (1,2,2,2), 2 blocks, attention at 16², dropout 0.1). Ours has no FIR resampling and no
    progressive input branch."""
    return {"name": "unet", "channels": channels, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
            "attn_resolutions": [16], "dropout": 0.1, **extra}


SMALL_RESNET = {"name": "resnet", "channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
                "embedding_dim": 32, "temb_dim": 64}
SMALL_UNET = {"name": "unet", "channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
              "attn_resolutions": [7], "dropout": 0.0}
TINY_UNET = {**SMALL_UNET, "channels": 8}
CIFAR10 = {"name": "cifar10", "hflip": True}
FMNIST = {"name": "fashion_mnist"}
FMNIST_TRAIN = {"log_every": 25, "eval_samples": 500, "eval_metric": "fd_fmnist", "keep_best": False}


# -- DRL -------------------------------------------------------------------------------------------
@RECIPES.register("drl_cifar10")
def drl_cifar10() -> Recipe:
    """DRL on CIFAR-10 (T = 6, K = 30; FID 9.58 published): specs/drl.md §3–§6."""
    return _preset(drl(), "drl_cifar10", "Diffusion Recovery Likelihood, CIFAR-10 (the paper's setting)", {
        "data": CIFAR10, "network": drl_ebm(), "energy": {"name": "drl", "b_square": 2e-4, "c_rule": "sigma_ratio"},
        "train": {"steps": 1_000_000, "batch_size": 256, "lr": 1e-4, "eps": 1e-7, "warmup": 1000,
                  "lr_schedule": "constant", "grad_clip": None, "ema_decay": 0.999, "ema_warmup": False,
                  "checkpoint_every": 5000, "log_every": 100, "eval_every": 0},
    })


@RECIPES.register("drl_fmnist")
def drl_fmnist() -> Recipe:
    """DRL on Fashion-MNIST for a CPU: a 16-channel ResNet EBM, the paper's step rule (b² = 2e-4),
    K = 20 Langevin steps. (b² = 2e-3 with K = 10 fell into a checkerboard pattern after 500
    iterations: FD-FMNIST 347 → 711. lr 1e-3 is faster, then collapses: 406 at 80, 324 at 320,
    691 at 400, saturated white.)"""
    return _preset(drl(), "drl_fmnist", "Diffusion Recovery Likelihood, Fashion-MNIST CPU preset", {
        "data": FMNIST, "network": SMALL_RESNET,
        "energy": {"name": "drl", "b_square": 2e-4, "c_rule": "sigma_ratio"},
        "sampler.n_steps": 20,
        "train": {"steps": 500, "batch_size": 64, "lr": 2e-4, "eps": 1e-7, "warmup": 50, "lr_schedule": "constant",
                  "grad_clip": 1.0, "ema_decay": 0.99, "checkpoint_every": 100, "eval_every": 100, **FMNIST_TRAIN},
    })


# -- CDRL ------------------------------------------------------------------------------------------
@RECIPES.register("cdrl_cifar10")
def cdrl_cifar10() -> Recipe:
    """CDRL on CIFAR-10 (T = 6, K = 15; FID 4.31 published): specs/cdrl.md §3–§5."""
    return _preset(cdrl(), "cdrl_cifar10", "Cooperative DRL, CIFAR-10 (the paper's setting)", {
        "data": CIFAR10, "network": drl_ebm(temb_activation=True),
        "energy": {"name": "drl", "b_square": 4e-4, "c_rule": "sigma_ratio"},
        # lucidrains' DDPM U-Net at width 64: (1,1,1), 3 blocks, attention at 16 and 8, dropout 0.1
        "sampler.initializer": {"name": "unet", "channels": 64, "channel_mult": [1, 1, 1], "num_res_blocks": 3,
                                "attn_resolutions": [16, 8], "dropout": 0.1},
        "sampler.denoise": True,
        "train": {"steps": 500_000, "batch_size": 256, "lr": 1e-4, "sampler_lr": 1e-5, "warmup": 10_000,
                  "lr_schedule": "constant", "grad_clip": 1.0, "ema_decay": 0.9999, "ema_warmup": False,
                  "checkpoint_every": 5000, "log_every": 100, "eval_every": 0},
    })


@RECIPES.register("cdrl_fmnist")
def cdrl_fmnist() -> Recipe:
    """CDRL on Fashion-MNIST for a CPU: a 16-channel ResNet EBM with the paper's image step rule
    (b² = 4e-4) and its final Tweedie step, an 8-channel U-Net initializer, K = 8 refinement
    steps, cosine learning-rate decay. Two options beyond the paper hold the initializer to the
    data: 1,000 steps of regression onto real pairs before the first joint step
    (`train.pretrain_steps`), and that regression kept in its loss (`sampler.regression_weight`).
    Without them the samples' mean intensity drifted between evaluations (FD-FMNIST 310 at
    iteration 320, 626 at 400, with both learning rates near zero): generation divides each
    level's mean error by a_{t+1} < 1, and at this budget the refinement barely corrects it
    (benchmarks/README.md, benchmarks/level_means.py). With them the samples are the anchored
    initializer's: a run with the energy frozen at its initialization scores better (205 against
    221), so this preset shows CDRL's machinery on images, not its energy's gain."""
    return _preset(cdrl(), "cdrl_fmnist", "Cooperative DRL, Fashion-MNIST CPU preset", {
        "data": FMNIST, "network": SMALL_RESNET,
        "energy": {"name": "drl", "b_square": 4e-4, "c_rule": "sigma_ratio"},
        "sampler.initializer": TINY_UNET, "sampler.refine.n_steps": 8, "sampler.denoise": True,
        "sampler.regression_weight": 1.0,
        "train": {"steps": 400, "batch_size": 64, "lr": 1e-4, "sampler_lr": 5e-4, "warmup": 50, "pretrain_steps": 1000,
                  "lr_schedule": "cosine", "grad_clip": 1.0, "ema_decay": 0.99, "checkpoint_every": 80,
                  "eval_every": 80, **FMNIST_TRAIN},
    })


# -- DDAEBM ----------------------------------------------------------------------------------------
@RECIPES.register("ddaebm_cifar10")
def ddaebm_cifar10() -> Recipe:
    """DDAEBM on CIFAR-10 (T = 4, β ∈ [0.1, 20], d_z = 100): specs/ddaebm.md §7–§8.3."""
    return _preset(ddaebm_paper(), "ddaebm_cifar10", "Denoising Diffusion Adversarial EBM, CIFAR-10 (the paper's setting)", {
        "data": CIFAR10,
        "schedule": {"name": "vp", "num_levels": 4, "beta_min": 0.1, "beta_max": 20.0, "spacing": "uniform"},
        "network": ncsnpp(128), "energy": {"name": "residual_norm", "zero_init": True},
        "sampler": {"name": "adversarial", "latent_dim": 100, "posterior_min_variance": 1e-4,
                    "generator": ncsnpp(128, latent_embedding_dim=256, mapping_layers=4, output="tanh"),
                    # Table 8's Encoder_small is a plain strided conv net; ours is a small ResNet
                    "encoder": {"name": "resnet", "channels": 64, "channel_mult": [1, 2, 4, 8], "num_res_blocks": 1,
                                "embedding_dim": 256, "temb_dim": 256, "head": "linear", "spectral_norm": False}},
        "divergence.elbo_min_variance": 0.4409,  # σ̃²_1 of this schedule (specs/ddaebm.md §3 table)
        "train": {"steps": 254_000, "batch_size": 256, "lr": 1e-4, "betas": (0.0, 0.9), "lr_schedule": "cosine",
                  "grad_clip": None, "ema_decay": 0.9999, "ema_warmup": False, "checkpoint_every": 5000,
                  "log_every": 100, "eval_every": 0},
    })


# CelebA's aligned 178×218 faces (img_align_celeba/, 000001.jpg …), cut to DDGAN's face box and
# resized to 64; sorted file names put the 162,770 train-partition images first
CELEBA64 = {"name": "image_folder", "root": "~/.cache/ebmkit/celeba/img_align_celeba", "size": 64,
            "crop": (15, 40, 163, 188), "hflip": True, "limit": 162_770}


@RECIPES.register("ddaebm_celeba64")
def ddaebm_celeba64() -> Recipe:
    """DDAEBM on CelebA 64² (T = 4, β ∈ [0.1, 20], d_z = 100, FID 10.29 published): specs/ddaebm.md §7–§8.3."""
    return _preset(ddaebm_cifar10(), "ddaebm_celeba64", "Denoising Diffusion Adversarial EBM, CelebA 64 (the paper's setting)", {
        "data": CELEBA64,
        "network": ncsnpp(64, channel_mult=[1, 1, 2, 2, 4]),
        "sampler.generator": ncsnpp(64, channel_mult=[1, 1, 2, 2, 4], latent_embedding_dim=256, mapping_layers=4,
                                    output="tanh"),
        # Encoder_64 is Encoder_small with one more stride-2 stage (to 1024 channels); ours is the ResNet one level deeper
        "sampler.encoder.channel_mult": [1, 2, 4, 8, 16],
        "divergence.r1_gamma": 0.002,
        # the config's 600 epochs of 162,770 images at a global batch of 128 (32 per GPU × 4)
        "train": {"steps": 763_000, "batch_size": 128, "lr": 5e-5, "betas": (0.0, 0.9), "lr_schedule": "cosine",
                  "grad_clip": None, "ema_decay": 0.999, "ema_warmup": False, "seed": 2338,
                  "checkpoint_every": 5000, "log_every": 100, "eval_every": 0},
    })


@RECIPES.register("ddaebm_fmnist")
def ddaebm_fmnist() -> Recipe:
    """DDAEBM on Fashion-MNIST for a CPU: the paper's image energy E = ½‖x − U(x, t)‖² and a
    z-conditioned generator, both 8-channel U-Nets; d_z = 50 and λ_fake = 0.1 (the paper's MNIST
    settings). A scalar ResNet energy, 3× cheaper, drifted to |E| ~ 10⁴ within 50 iterations: the
    residual norm is bounded below, a scalar head is not."""
    return _preset(ddaebm_paper(), "ddaebm_fmnist", "Denoising Diffusion Adversarial EBM, Fashion-MNIST CPU preset", {
        "data": FMNIST,
        "schedule": {"name": "vp", "num_levels": 4, "beta_min": 0.1, "beta_max": 10.0, "spacing": "uniform"},
        "network": TINY_UNET, "energy": {"name": "residual_norm", "zero_init": True},
        "sampler": {"name": "adversarial", "latent_dim": 50, "posterior_min_variance": 1e-4,
                    "generator": {**TINY_UNET, "latent_embedding_dim": 64, "mapping_layers": 2, "output": "tanh"},
                    "encoder": {**SMALL_RESNET, "head": "linear", "spectral_norm": False}},
        "divergence.elbo_min_variance": 0.2422,  # σ̃²_1 of the MNIST schedule (specs/ddaebm.md §3 table)
        "divergence.lambda_fake": 0.1,  # the paper's MNIST value
        # lr 5e-4 reached FD-FMNIST 299 at iteration 168, then fell apart into noise (637 at 280)
        "train": {"steps": 280, "batch_size": 64, "lr": 2e-4, "betas": (0.0, 0.9), "grad_clip": None,
                  "ema_decay": 0.99, "ema_warmup": True, "checkpoint_every": 56, "eval_every": 56, **FMNIST_TRAIN},
    })


# -- DxMI ------------------------------------------------------------------------------------------
@RECIPES.register("dxmi_cifar10")
def dxmi_cifar10() -> Recipe:
    """DxMI on CIFAR-10 (T = 10, τ = 0.1/0.01, sigmoid time cost): specs/dxmi.md §3–§5.

    The paper starts the policy from a pretrained 1000-step DDPM; here the pretraining phase
    trains that ε-network (DDPM++ U-Net) on the T = 10 chain itself."""
    return _preset(dxmi(), "dxmi_cifar10", "Diffusion by Maximum-Entropy IRL, CIFAR-10 (the paper's setting)", {
        "data": CIFAR10, "schedule": {"name": "ddpm_cosine", "num_levels": 10},
        # IGEBM-style energy = value: no SN, linear head; widths 128, 256, 256, 256 with 3 poolings
        "network": {"name": "resnet", "channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 1,
                    "head": "linear", "spectral_norm": False},
        "sampler": {"name": "dp_policy", "network": ncsnpp(128), "tau": 0.1, "tau_velocity": 0.01,
                    "sigma_lr_scale": 100.0, "last_sigma": 1e-3, "avr_decay": 0.99, "value": "time_independent",
                    "value_target": "sigmoid_time_cost", "time_cost": 1.0, "clip_x0": 1.0},
        "train": {"steps": 80_000, "batch_size": 128, "lr": 1e-5, "sampler_lr": 1e-7, "grad_clip": None,
                  "sampler_grad_clip": 0.1, "pretrain_steps": 200_000, "pretrain_lr": 2e-4, "seed": 112233,
                  "ema_decay": 0.0, "ema_warmup": False,  # the release keeps no EMA (specs/dxmi.md §4)
                  "log_every": 100, "checkpoint_every": 5000, "eval_every": 0, "keep_best": False},
    })


@RECIPES.register("dxmi_fmnist")
def dxmi_fmnist() -> Recipe:
    """DxMI on Fashion-MNIST for a CPU: a T = 4 policy (16-channel U-Net) pretrained as a DDPM,
    then DxDP against a 16-channel ResNet energy/value."""
    return _preset(dxmi(), "dxmi_fmnist", "Diffusion by Maximum-Entropy IRL, Fashion-MNIST CPU preset", {
        "data": FMNIST, "schedule": {"name": "ddpm_cosine", "num_levels": 4},
        "network": {**SMALL_RESNET, "head": "linear", "spectral_norm": False},
        "sampler": {"name": "dp_policy", "network": SMALL_UNET, "tau": 0.1, "tau_velocity": 0.01,
                    "sigma_lr_scale": 100.0, "last_sigma": 1e-3, "avr_decay": 0.99, "value": "time_independent",
                    "value_target": "sigmoid_time_cost", "time_cost": 1.0, "clip_x0": 1.0},
        # lr 1e-4 / 1e-5 reached FD-FMNIST 169 at iteration 120, then 248 at 200
        "train": {"steps": 200, "batch_size": 64, "lr": 5e-5, "sampler_lr": 5e-6, "grad_clip": None,
                  "sampler_grad_clip": 0.1, "pretrain_steps": 600, "pretrain_lr": 1e-3, "checkpoint_every": 40,
                  "eval_every": 40, **FMNIST_TRAIN},
    })


# -- DSM -------------------------------------------------------------------------------------------
@RECIPES.register("dsm_fmnist")
def dsm_fmnist() -> Recipe:
    """DSM on Fashion-MNIST for a CPU (specs/dsm.md §9.2, cut to CPU minutes): the denoiser-form
    energy E = ½‖x − U(x, t)‖²/σ̄_t² on a 16-channel U-Net without attention at 7², 100 cosine
    levels, 100-step ancestral generation with x̂_0 clipped to [−1, 1]. The spec's 20k iterations
    at lr 2e-4 are hours here; 500 at 1e-3 with cosine decay fit the quarter hour. (At equal CPU
    time an 8-channel U-Net on 50 levels, 1,500 iterations, scored worse: FD-FMNIST 326 on 200
    samples against 270–312 for this network at 300–600 iterations.)"""
    return _preset(dsm(), "dsm_fmnist", "Denoising score matching on an energy, Fashion-MNIST CPU preset", {
        "data": FMNIST, "schedule": {"name": "ddpm_cosine", "num_levels": 100},
        "network": {**SMALL_UNET, "attn_resolutions": []},
        "energy": {"name": "residual_norm", "zero_init": True, "scale": "inv_sigma_sq"},
        "sampler": {"name": "reverse_diffusion", "method": "ancestral", "clip_x0": 1.0},
        "divergence": {"name": "dsm", "weighting": "sigma_sq", "reduce": "mean"},
        "train": {"steps": 500, "batch_size": 64, "lr": 1e-3, "warmup": 50, "lr_schedule": "cosine",
                  "grad_clip": 1.0, "ema_decay": 0.995, "checkpoint_every": 250, "eval_every": 250, **FMNIST_TRAIN},
    })


@RECIPES.register("dsm_cifar10")
def dsm_cifar10() -> Recipe:
    """DSM on CIFAR-10 in NCSNv2's CIFAR-10 setting (specs/dsm.md §6.1): 232 geometric noise levels,
    σ²-weighted DSM summed over dimensions, Adam 1e-4, batch 128, 300k iterations, EMA 0.999,
    annealed Langevin with 5 steps per level and the final denoising step. NCSNv2 reports FID
    10.87 with its score network (recalled in the spec, not read); this energy version has not
    been run here. NCSNv2's data live in [0, 1], ebmkit's images in [−1, 1]: the σ's are doubled
    and ε quadrupled, the same process in these units."""
    return _preset(dsm(), "dsm_cifar10", "Denoising score matching on an energy, CIFAR-10 (NCSNv2's setting)", {
        "data": CIFAR10,
        "schedule": {"name": "ve_geometric", "num_levels": 232, "sigma_max": 100.0, "sigma_min": 0.02},
        # NCSNv2's RefineNet (ngf 128, InstanceNorm++, ELU) is not here: the DDPM++-style U-Net at 128
        # channels without dropout or attention at 16² (it keeps the middle block's attention)
        "network": ncsnpp(128, attn_resolutions=[], dropout=0.0),
        "energy": {"name": "residual_norm", "zero_init": True, "scale": "inv_sigma_sq"},
        "sampler": {"name": "reverse_diffusion", "method": "annealed_langevin", "steps_per_level": 5, "eps": 2.48e-5,
                    "between_levels": "rescale", "denoise_last": True},
        "divergence": {"name": "dsm", "weighting": "sigma_sq", "reduce": "sum"},
        "train": {"steps": 300_000, "batch_size": 128, "lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "warmup": 0,
                  "lr_schedule": "constant", "grad_clip": None, "ema_decay": 0.999, "ema_warmup": False,
                  "checkpoint_every": 5000, "log_every": 100, "eval_every": 0},
    })
