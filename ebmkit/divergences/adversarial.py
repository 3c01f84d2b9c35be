"""DDAEBM's divergences (Geng et al. 2024, §3): the energy by maximum likelihood with
generator negatives, the generator by a KL, its reverse, or both (the Jeffrey divergence).

ebmkit's E is the paper's −f (p ∝ e^{−E}). For the real pair (x_t, x_{t+1}) ~ q and the
generator's x'_t ~ q_ψ(x_t | x_{t+1}) with latent z, level label t (specs/ddaebm.md §5-6):

Energy step (Eq. 22-23; the Gaussian kernels cancel between the two terms):
    L_θ = mean[ E(x_t, t) − λ_fake E(sg x'_t, t) ] + (γ/2) mean ‖∇_{x_t} log p̃_θ(x_t | x_{t+1})‖²,
    log p̃_θ(x_t | x_{t+1}) = −E(x_t, t) + log q(x_{t+1} | x_t)       (R1 on the conditional, x_{t+1} fixed)

Generator step, θ frozen (Eq. 17 and 19-21):
    KL(q_ψ ‖ p_θ)  ≤  E(x'_t, t) − log q(x_{t+1} | x'_t) + λ_H · [−log q_φ(z | x'_t, x_{t+1}, t)]
    KL(p_θ ‖ q_ψ)  ≤  w_{t+1} · [−log N(x_t; μ̃(x_{t+1}, G(x_{t+1}, z_e, t)), σ̂²_t)] + KL(q_φ(z | x_t, x_{t+1}) ‖ N(0, I))
with z_e ~ q_φ(· | x_t, x_{t+1}, t) on the real pair, w_τ = a τ^{log_{1/2}(b/a)} (the importance
ratio, a function of the time τ of x_{t+1}) and σ̂² the posterior variance with a floor.
`jeffrey` minimises both bounds, `kl` the first, `reverse_kl` the second. With the generator
q_ψ as the model fitted to p_θ, the first is the mode-seeking KL (the usual "reverse" KL) and the
second the mass-covering one (the usual "forward" KL): the registered names follow the paper's
ablation table, the code says which is which.
"""

from __future__ import annotations

import math
from typing import Literal, Union

import torch
from pydantic import Field
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.divergences.base import Divergence, energy_metrics
from ebmkit.registry import DIVERGENCES, Options
from ebmkit.types import LossOutput, SampleRecord, TrainingBatch

LOG_2PI = math.log(2 * math.pi)


def gaussian_nll(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """−log N(x; mean, var·I) per sample, summed over every non-batch dimension."""
    return 0.5 * ((x - mean).pow(2) / var + var.log() + LOG_2PI).flatten(1).sum(1)


def kl_to_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(μ, diag e^{log_var}) ‖ N(0, I)) per sample: ½ Σ (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(1)


class AdversarialOptions(Options):
    lambda_fake: float = Field(1.0, ge=0, description="weight of the generated term in the energy step (MNIST: 0.1)")
    r1_gamma: float = Field(0.02, ge=0, description="γ of the R1 penalty on the conditional log-density")
    entropy_weight: float = Field(0.1, ge=0, description="λ_H on the entropy bound (code 0.1; paper 1; 0: 'w/o q_φ')")
    elbo_min_variance: Union[float, Literal["level_1"]] = Field(
        0.01, description="floor of the ELBO's posterior variance σ̂²: a number (2D: 0.01) or 'level_1' (images: σ̃²_1)")
    reconstruction: Literal["gaussian", "mse_prior_z"] = Field(
        "gaussian", description="'gaussian': the paper's ELBO; 'mse_prior_z': the release's CIFAR variant")
    importance_weight: tuple[float, float] = Field(
        (1.0, 1.0), description="(a, b) of w_τ = a τ^{log_½(b/a)}: w(1) = a, w(½) = b; (1, 1) gives w ≡ 1")


class AdversarialDivergence(Divergence):
    """Shared energy step and bounds; subclasses pick which KL the generator minimises."""

    Options = AdversarialOptions
    mode_seeking: bool = True  # the bound on KL(q_ψ ‖ p_θ)
    mass_covering: bool = True  # the bound on KL(p_θ ‖ q_ψ)

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"generator_objective"})

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        needs = (Need("sampler", "latent_generator"),)
        if tuple(options.importance_weight) != (1.0, 1.0):
            needs += (Need("schedule", "diffusion_times", instead="set divergence.importance_weight=[1, 1]"),)
        return needs

    def __init__(self, options, *, schedule):
        super().__init__(options, schedule=schedule)
        s = schedule
        floor = s.posterior_variance[1] if options.elbo_min_variance == "level_1" else options.elbo_min_variance
        self.elbo_variance = s.posterior_variance.clamp(min=float(floor)).float()  # σ̂²_t
        a, b = options.importance_weight
        if (a, b) == (1.0, 1.0):
            w = torch.ones(s.num_levels, dtype=torch.float64)
        else:
            if not hasattr(s, "times"):
                raise ValueError(f"importance_weight {options.importance_weight} needs a schedule with diffusion "
                                 f"times (vp); {type(s).__name__} has none")
            w = a * s.times()[1:] ** math.log(b / a, 0.5)  # τ = time of x_{t+1}
        self.level_weights = w.float()

    # -- pairs and the Gaussian kernel --------------------------------------------------------
    def training_batch(self, x0: Tensor, generator=None) -> TrainingBatch:
        """Exact joint pairs: x_t from the marginal, then one forward step (no shared noise)."""
        t = self.schedule.levels(x0.shape[0], generator=generator, device=x0.device)
        x_t, x_next = self.schedule.q_pair(x0, t, generator=generator)
        return TrainingBatch(positives=x_t, condition=x_next, level=t, data=x0)

    def log_kernel(self, x_t: Tensor, x_next: Tensor, t: Tensor) -> Tensor:
        """log q(x_{t+1} | x_t) = log N(x_{t+1}; a_{t+1} x_t, β_{t+1} I) per sample."""
        s = self.schedule
        a, var = s.gather(s.sqrt_alphas, t + 1, x_t), s.gather(s.betas, t + 1, x_t)
        return -gaussian_nll(x_next, a * x_t, var)

    @property
    def differentiates_twice(self) -> bool:
        return self.config.r1_gamma > 0

    # -- energy step ---------------------------------------------------------------------
    def energy_loss(self, batch: TrainingBatch, negatives: Tensor, energy) -> LossOutput:
        t, n = batch.level, batch.level.shape[0]
        x = batch.positives.detach().requires_grad_(True)
        e = energy(torch.cat([x, negatives.detach()]), torch.cat([t, t]))
        e_pos, e_neg = e[:n], e[n:]
        loss = (e_pos - self.config.lambda_fake * e_neg).mean()
        metrics = energy_metrics(e_pos, e_neg)
        if self.config.r1_gamma > 0:
            log_cond = -e_pos + self.log_kernel(x, batch.condition, t)
            (grad,) = torch.autograd.grad(log_cond.sum(), x, create_graph=True)
            penalty = 0.5 * self.config.r1_gamma * grad.flatten(1).pow(2).sum(1).mean()
            loss = loss + penalty
            metrics["r1"] = penalty.detach()
        return LossOutput(loss, metrics)

    # -- generator step ------------------------------------------------------------------
    def sampler_loss(self, batch: TrainingBatch, record: SampleRecord, energy, sampler, generator=None) -> LossOutput:
        c, t, x_next = self.config, batch.level, batch.condition
        negatives, z = record.negatives, record.saved["latent"]
        loss = torch.zeros((), device=x_next.device)
        metrics = {}
        if self.mode_seeking:
            adversarial = (energy(negatives, t) - self.log_kernel(negatives, x_next, t)).mean()
            loss = loss + adversarial
            metrics["g_adv"] = adversarial.detach()
            if c.entropy_weight > 0:  # Eq. 16: cross-entropy bound on H(p_ψ(z | x'_t, x_{t+1}))
                mu, log_var = sampler.encode(negatives, x_next, t)
                latent_nll = gaussian_nll(z, mu, log_var.exp() + 1e-6).mean()
                loss = loss + c.entropy_weight * latent_nll
                metrics["g_latent_nll"] = latent_nll.detach()
        if self.mass_covering:
            x_t = batch.positives
            mu, log_var = sampler.encode(x_t, x_next, t)
            kl = kl_to_standard_normal(mu, log_var).mean()
            if c.reconstruction == "gaussian":
                eps = rnd.randn_like(mu, generator)
                z_e = mu + (0.5 * log_var).exp() * eps
                mean, _ = self.schedule.q_posterior(x_next, sampler.predict_x0(x_next, z_e, t), t)
                var = self.schedule.gather(self.elbo_variance, t, x_t)
                recon = gaussian_nll(x_t, mean, var)
            else:  # the release's CIFAR variant: squared error of the prior-z prediction
                mean, _ = self.schedule.q_posterior(x_next, sampler.predict_x0(x_next, z, t), t)
                recon = (x_t - mean).flatten(1).pow(2).sum(1)
            recon = (self.level_weights.to(recon.device)[t] * recon).mean()
            loss = loss + recon + kl
            metrics.update(g_recon=recon.detach(), g_kl=kl.detach())
        return LossOutput(loss, {"sampler_loss": loss.detach(), **metrics})


@DIVERGENCES.register("jeffrey")
class Jeffrey(AdversarialDivergence):
    """KL(q_ψ ‖ p_θ) + KL(p_θ ‖ q_ψ): DDAEBM's generator objective (Eq. 10)."""


@DIVERGENCES.register("kl")
class ModeSeekingKL(AdversarialDivergence):
    """KL(q_ψ ‖ p_θ) alone: the mode-seeking objective of VERA/MEG (DDAEBM's 'KL only' ablation)."""

    mass_covering = False


@DIVERGENCES.register("reverse_kl")
class MassCoveringKL(AdversarialDivergence):
    """KL(p_θ ‖ q_ψ) alone, through the importance-weighted ELBO on real pairs."""

    mode_seeking = False


ForwardKL, ReverseKL = ModeSeekingKL, MassCoveringKL  # their earlier names, kept for imports
