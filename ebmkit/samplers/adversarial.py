"""Adversarial sampler (DDAEBM, Geng et al. 2024, §3.2): a generator denoises in one draw.

For the pair (x_t, x_{t+1}) the generator-defined denoiser is (DDAEBM Eq. 9, as in DDGAN)

    x̂_0 = G_ψ(x_{t+1}, z, t),  z ~ N(0, I),     x_t ~ q(x_t | x_{t+1}, x̂_0)

— a reparameterised posterior draw, so gradients reach ψ; no noise is added at t = 0. A
Gaussian variational posterior q_φ(z | x_t, x_{t+1}, t) (the encoder) serves the generator's
entropy bound (Eq. 16) and its ELBO (Eq. 18). Generation runs the T draws from x_T ~ N(0, I):
NFE = T, no MCMC. The objective of ψ and φ belongs to the divergence (`jeffrey`, `kl`,
`reverse_kl`); this module owns only the networks and the distributions they define.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.networks import build_network
from ebmkit.registry import NETWORKS, SAMPLERS
from ebmkit.samplers.base import Sampler, SamplerOptions
from ebmkit.types import SampleRecord, TrainingBatch

_TOY_NET = {"name": "embed_mlp", "batch_norm": True}


@SAMPLERS.register("adversarial")
class AdversarialSampler(Sampler):
    """DDAEBM: generator G(x_{t+1}, z, t) → x̂_0, posterior draw of x_t; encoder q_φ(z | x_t, x_{t+1}, t)."""

    learnable = True

    class Options(SamplerOptions):
        generator: Any = Field(default_factory=lambda: dict(_TOY_NET), description="network spec of G_ψ")
        encoder: Any = Field(default_factory=lambda: dict(_TOY_NET), description="network spec of q_φ")
        latent_dim: int = Field(2, ge=1, description="d_z (2 in 2D, 100 for images)")
        latent: Literal["gaussian", "zero"] = Field("gaussian", description="'zero': the paper's no-latent ablation")
        posterior_min_variance: Optional[float] = Field(
            None, gt=0, description="clip of q(x_t | x_{t+1}, x_0)'s variance when drawing (images: 1e-4)")

        @field_validator("generator", "encoder")
        @classmethod
        def _network(cls, spec):
            return NETWORKS.validate(spec)

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"latent_generator"})

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return super().needs(options) + (Need("divergence", "generator_objective"),)

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        dim, d_z, T = math.prod(self.shape), options.latent_dim, schedule.num_levels
        # G_ψ, named after the paper's symbol: in ebmkit `generator` is the random stream every method takes
        self.G = build_network(options.generator, shape=self.shape, num_levels=T, out_dim=dim, cond_dim=d_z)
        self.register_load_state_dict_pre_hook(_renamed_generator)
        # the encoder reads [x_t, x_{t+1}] joined on axis 1: features of vectors, channels of images
        pair = (2 * self.shape[0], *self.shape[1:])
        self.encoder = build_network(options.encoder, shape=pair, num_levels=T, out_dim=2 * d_z)
        var = schedule.posterior_variance
        if options.posterior_min_variance is not None:
            var = var.clamp(min=options.posterior_min_variance)
        self.register_buffer("draw_std", var.sqrt().float(), persistent=False)

    # -- the distributions ----------------------------------------------------------------
    def latent_sample(self, n: int, like: Tensor, generator=None) -> Tensor:
        z = rnd.randn((n, self.config.latent_dim), generator=generator, device=like.device, dtype=like.dtype)
        return z.zero_() if self.config.latent == "zero" else z

    def predict_x0(self, x_next: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """x̂_0 = G_ψ(x_{t+1}, z, t)."""
        return self.G(x_next, t, z).view_as(x_next)

    def posterior_draw(self, x_next: Tensor, x0_hat: Tensor, t: Tensor, generator=None) -> Tensor:
        """x_t ~ q(x_t | x_{t+1}, x̂_0), reparameterised; the mean alone at t = 0."""
        mean, _ = self.schedule.q_posterior(x_next, x0_hat, t)
        noise = rnd.randn_like(mean, generator)
        std = self.schedule.gather(self.draw_std, t, mean) * (t > 0).view((-1,) + (1,) * (mean.dim() - 1))
        return mean + std * noise

    def encode(self, x_t: Tensor, x_next: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q_φ(z | x_t, x_{t+1}, t)."""
        h = self.encoder(torch.cat([x_t, x_next], dim=1), t)
        mu, log_var = h.chunk(2, dim=1)
        return mu, log_var

    # -- the sampler contract ---------------------------------------------------------------
    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        """Negatives x'_t with their graph (the generator's objective backpropagates through
        them), and the latent z that made them, for the entropy bound."""
        x_next, t = batch.condition, batch.level
        z = self.latent_sample(x_next.shape[0], x_next, generator)
        return SampleRecord(self.posterior_draw(x_next, self.predict_x0(x_next, z, t), t, generator), {"latent": z})

    @torch.no_grad()
    def generate(self, n: int, energy, generator=None) -> Tensor:
        """x_T ~ N(0, I); for t = T−1..0: z ~ N(0, I), x_t ~ q(x_t | x_{t+1}, G(x_{t+1}, z, t))."""
        device = self.draw_std.device
        x = self.schedule.prior_sample((n, *self.shape), generator=generator, device=device)
        for level in reversed(range(self.schedule.num_levels)):
            t = torch.full((n,), level, device=device, dtype=torch.long)
            x = self.posterior_draw(x, self.predict_x0(x, self.latent_sample(n, x, generator), t), t, generator)
        return self.finish(x, energy)


def _renamed_generator(module, state_dict, prefix, *args) -> None:
    """Weights and checkpoints written before December 2026 call G_ψ ``generator``: read them as ``G``."""
    old = prefix + "generator."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "G." + key[len(old):]] = state_dict.pop(key)
