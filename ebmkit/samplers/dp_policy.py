"""DxMI's diffusion policy (Yoon et al., NeurIPS 2024), trained by DxDP against the energy.

Index mapping. DxMI counts from the noise: x_0 ~ N(0, I), step t = 0..T−1 maps x_t → x_{t+1},
x_T is the sample and V(·, T) = E. Inside ebmkit level 0 is data, so

    DxMI state x_t  ≙  level k = T − t,     DxMI step t  ≙  the draw of level j = T − 1 − t,

and everything below is indexed by level; `level_of_step` is the only crossing (the sigmoid
time cost is defined on DxMI's t). With σ_j the std of the draw of level j from x_{j+1}:

    policy     x_j = μ_φ(x_{j+1}, j+1) + σ_j ε,  μ_φ the DDPM posterior mean with x̂_0 from ε_φ
    value      V(x, k) = E(x, k): the energy's own network, so V(·, 0) = E (2D, Table 1), or
               V(x, k) = E(x, 0) ("time_independent", the image variant, §4.3)
    costs      rc_j = mean_d (x_j − x_{j+1})² / (2 s_j²),  entropy −log σ_j  (per dimension: the
               published τ's are per-dimension values, specs/dxmi.md §8.1)
    TD target  V(x_{j+1}, j+1) ← sg[V(x_j, j) + τ₂ rc_j − τ₁ log σ_j]   (Alg. 1, Eq. 10), or
               sg[V(x_j, j) + R(t)] with a time cost R (Eq. 12); swept j = 0..T−1, one step
               each, so every target reads the network its previous step updated
    policy     ℓ(φ) = mean V(x_j(φ), j) + τ₂ rc_j(φ) − τ₁ log σ_j(φ), x_j(φ) reparameterised,
               on B states drawn from this iteration's B·T (Eq. 11; the CIFAR trainer's rule)
    AVR        s_j² ← α s_j² + (1 − α) mean_{b,d} (x_j − x_{j+1})²   (§4.5), before the TD sweep

The last draw's σ_0 is fixed ("fix_last"); the others learn at ``sigma_lr_scale`` × the
sampler lr. ``pretrain_loss`` is the DDPM ε-MSE on the same T-level chain (Table 1's
"pretrain"), run by the trainer's pretraining phase (`train.pretrain_steps`).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Literal, Optional

import torch
from pydantic import Field, field_validator
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Need
from ebmkit.networks import build_network
from ebmkit.registry import NETWORKS, SAMPLERS
from ebmkit.samplers.base import Sampler, SamplerOptions
from ebmkit.types import LossOutput, SampleRecord, TrainingBatch, Update


def level_of_step(t: int, num_levels: int) -> int:
    """The level drawn by DxMI's sampling step t (x_t → x_{t+1}; x_0 is DxMI's noise)."""
    if not 0 <= t < num_levels:
        raise ValueError(f"DxMI step t must be in 0..{num_levels - 1}, got {t}")
    return num_levels - 1 - t


def sigmoid_time_cost(num_levels: int, scale: float = 1.0) -> Tensor:
    """R(t) = c [sigm(m − t) − sigm(m − t − 1)], m = T // 2, for DxMI steps t = 0..T−1 (Eq. 12)."""
    t = torch.arange(num_levels, dtype=torch.float64)
    m = num_levels // 2
    return scale * (torch.sigmoid(m - t) - torch.sigmoid(m - t - 1))


@SAMPLERS.register("dp_policy")
class DiffusionPolicySampler(Sampler):
    """DxMI: a T-step Gaussian diffusion policy with learned σ's, trained by DxDP on a value
    function that shares the energy's network."""

    learnable = True
    pretrainable = True  # a DDPM on the same chain first (`pretrain_loss`), as DxMI fine-tunes one

    class Options(SamplerOptions):
        network: Any = Field(default_factory=lambda: {"name": "mlp", "width": 128, "depth": 3, "activation": "silu"},
                             description="network spec of ε_φ(x_k, k)")
        tau: float = Field(0.1, ge=0, description="τ₁: weight of the entropy −log σ (per dimension)")
        tau_velocity: Optional[float] = Field(None, ge=0, description="τ₂: weight of the velocity cost; null: τ")
        learn_sigma: bool = Field(True, description="learn log σ_j of every draw but the last")
        sigma_lr_scale: float = Field(10.0, gt=0, description="log σ lr / the sampler lr (paper App. B: 100)")
        last_sigma: float = Field(1e-3, gt=0, description="fixed σ_0 of the final draw (the VAR sampler's 0.001)")
        avr_decay: float = Field(0.99, ge=0, lt=1, description="α of the adaptive velocity regularisation EMA")
        value: Literal["time_dependent", "time_independent"] = "time_dependent"
        value_target: Literal["running_costs", "sigmoid_time_cost", "linear_time_cost"] = Field(
            "running_costs", description="TD target: Alg. 1's running costs (2D) or a time cost R(t) (images)")
        time_cost: float = Field(1.0, ge=0, description="c of R(t): sigmoid c = 1, linear c = 0.05 in the paper")
        clip_x0: Optional[float] = Field(
            None, gt=0, description="clamp x̂_0 to [−c, c] in every step's mean (DDPM's clip_denoised; 1 for images)")
        guidance: float = Field(0.0, description="λ of value guidance at generation: x_j ← x_j − λ σ_j ∇V(x_j, j)")

        @field_validator("network")
        @classmethod
        def _network(cls, spec):
            return NETWORKS.validate(spec)

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"fresh_samples"})

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        if options.value == "time_dependent":  # the TD sweep reads V(x_T, T)
            return super().needs(options) + (Need("energy", "level_T", instead="set sampler.value=time_independent"),)
        return super().needs(options)

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        T, dim = schedule.num_levels, math.prod(self.shape)
        self.eps_net = build_network(options.network, shape=self.shape, num_levels=T, out_dim=dim)
        sigma = schedule.posterior_variance.sqrt().float()  # σ̂_j, the DDPM posterior std
        sigma[0] = options.last_sigma
        self.register_buffer("log_sigma_last", sigma[:1].log())
        self.log_sigma_rest = torch.nn.Parameter(sigma[1:].clamp(min=1e-4).log(), requires_grad=options.learn_sigma)
        # s_j², initialised to σ_j²: running statistics of this process's chains, kept as state (not
        # weights: never EMA-averaged, broadcast or exported; generation does not read it)
        self.declare_state("velocity_var", sigma.pow(2).clamp(min=1e-4))
        self.register_load_state_dict_pre_hook(_velocity_var_from_weights)
        if options.value_target == "running_costs":
            cost = torch.zeros(T)
        elif options.value_target == "sigmoid_time_cost":
            cost = sigmoid_time_cost(T, options.time_cost).flip(0).float()  # level j = step T−1−j
        else:
            cost = torch.full((T,), options.time_cost)
        self.register_buffer("time_costs", cost, persistent=False)

    # -- the policy -----------------------------------------------------------------------
    @property
    def tau_velocity(self) -> float:
        c = self.config
        return c.tau if c.tau_velocity is None else c.tau_velocity

    def log_sigma(self) -> Tensor:
        """log σ_j, j = 0..T−1 (σ_0, the final draw's, fixed)."""
        return torch.cat([self.log_sigma_last, self.log_sigma_rest])

    def optimizer_groups(self) -> list[dict]:
        groups = [{"params": list(self.eps_net.parameters())}]
        if self.config.learn_sigma:
            groups.append({"params": [self.log_sigma_rest], "lr_scale": self.config.sigma_lr_scale})
        return groups

    def _levels(self, level: int | Tensor, x: Tensor) -> Tensor:
        if isinstance(level, Tensor):
            return level
        return torch.full((x.shape[0],), level, dtype=torch.long, device=x.device)

    def policy_mean(self, x_next: Tensor, k: Tensor) -> Tensor:
        """μ_φ(x_k, k): the mean of q(x_{k−1} | x_k, x̂_0), x̂_0 = (x_k − σ̄_k ε_φ(x_k, k)) / √ᾱ_k."""
        s = self.schedule
        eps = self.eps_net(x_next, k).view_as(x_next)
        x0_hat = (x_next - s.gather(s.sigmas_cumprod, k, x_next) * eps) / s.gather(s.sqrt_alphas_cumprod, k, x_next)
        if self.config.clip_x0 is not None:  # at the top level 1/√ᾱ_T amplifies ε's error (×83 for T = 4, cosine)
            x0_hat = x0_hat.clamp(-self.config.clip_x0, self.config.clip_x0)
        return s.q_posterior(x_next, x0_hat, k - 1)[0]

    def draw(self, x_next: Tensor, k: Tensor, noise: Tensor) -> Tensor:
        """x_{k−1} = μ_φ(x_k, k) + σ_{k−1} ε (reparameterised)."""
        std = self.schedule.gather(self.log_sigma().exp(), k - 1, x_next)
        return self.policy_mean(x_next, k) + std * noise

    def value(self, energy, x: Tensor, level: Tensor) -> Tensor:
        """V(x, level); V(·, 0) = E."""
        if self.config.value == "time_independent":
            level = torch.zeros_like(level)
        return energy(x, level)

    def running_cost(self, x: Tensor, x_next: Tensor, j: Tensor) -> Tensor:
        """τ₂ rc_j − τ₁ log σ_j per sample (per-dimension normalisation)."""
        rc = (x - x_next).flatten(1).pow(2).mean(1) / (2 * self.velocity_var[j])
        return self.tau_velocity * rc - self.config.tau * self.log_sigma()[j]

    def trajectory(self, n: int, energy=None, generator=None, guidance: float = 0.0) -> list[Tensor]:
        """[x_0, …, x_T] (by level) from x_T ~ N(0, I), without a graph."""
        device = self.log_sigma_last.device
        x = self.schedule.prior_sample((n, *self.shape), generator=generator, device=device)
        states = [x]
        for k in range(self.schedule.num_levels, 0, -1):
            kk = self._levels(k, x)
            noise = rnd.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
            with torch.no_grad():
                x = self.draw(x, kk, noise)
            if guidance:  # paper §5.2 sign: step down the value (the code's scale is −λ)
                with torch.enable_grad():
                    xg = x.detach().requires_grad_(True)
                    (grad,) = torch.autograd.grad(self.value(energy, xg, kk - 1).sum(), xg)
                x = x - guidance * self.log_sigma()[k - 1].exp().detach() * grad
            states.append(x.detach())
        return states[::-1]

    # -- the sampler contract ---------------------------------------------------------------
    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        """x⁻ = the final states of fresh trajectories, with the trajectories for DxDP."""
        states = self.trajectory(batch.positives.shape[0], generator=generator)
        return SampleRecord(states[0], {"trajectory": states})

    @torch.no_grad()
    def generate(self, n: int, energy, generator=None) -> Tensor:
        return self.finish(self.trajectory(n, energy, generator, self.config.guidance)[0], energy)

    @property
    def velocity_var(self) -> Tensor:
        return self.declared_state["velocity_var"]

    # -- DxDP -------------------------------------------------------------------------------
    @torch.no_grad()
    def update_velocity_var(self, states: list[Tensor]) -> None:
        """AVR: s_j² ← α s_j² + (1 − α) mean (x_j − x_{j+1})², from this iteration's trajectories."""
        step2 = torch.stack([(states[j] - states[j + 1]).pow(2).mean() for j in range(len(states) - 1)])
        self.velocity_var.lerp_(step2, 1 - self.config.avr_decay)

    def updates(self, batch: TrainingBatch, record: SampleRecord, energy, generator=None) -> Iterator[Update]:
        """AVR, then the backward TD sweep (DxMI t = T−1 … 0 ≙ states of level 1 … T): T steps of
        the value function, which is the energy's network, each target read after the last step."""
        states = record.saved["trajectory"]
        self.update_velocity_var(states)
        for j in range(self.schedule.num_levels):
            yield Update("energy", lambda j=j: self.td_loss(energy, states, j), "value loss ({sampler})")

    def td_loss(self, energy, states: list[Tensor], j: int) -> LossOutput:
        """(V(x_{j+1}, j+1) − sg[V(x_j, j) + c_j (+ running cost)])² on the trajectories' states."""
        x, x_next = states[j], states[j + 1]
        lj = self._levels(j, x)
        with torch.no_grad():
            target = self.value(energy, x, lj) + self.time_costs[j]
            if self.config.value_target == "running_costs":
                target = target + self.running_cost(x, x_next, lj)
        loss = (self.value(energy, x_next, lj + 1) - target).pow(2).mean()
        return LossOutput(loss, {f"td_{j + 1}": loss.detach()})

    def policy_loss(self, x_next: Tensor, k: Tensor, noise: Tensor, energy) -> Tensor:
        """ℓ(φ) on states x_k (level k ≥ 1) with fixed noise: V(x_{k−1}(φ), k−1) + running costs."""
        x = self.draw(x_next, k, noise)
        return (self.value(energy, x, k - 1) + self.running_cost(x, x_next, k - 1)).mean()

    def loss(self, batch: TrainingBatch, record: SampleRecord, energy, generator=None) -> LossOutput:
        """One reparameterised policy step on B states drawn from the B·T of the record's trajectories."""
        states = record.saved["trajectory"]
        n, T = states[0].shape[0], self.schedule.num_levels
        pool = torch.cat(states[1:])  # levels 1..T, n each
        idx = rnd.randint(0, n * T, (n,), generator=generator, device=pool.device)
        x_next, k = pool[idx], idx // n + 1
        noise = rnd.randn(x_next.shape, generator=generator, device=pool.device, dtype=pool.dtype)
        loss = self.policy_loss(x_next, k, noise, energy)
        return LossOutput(loss, {"sampler_loss": loss.detach(), "sigma_first": self.log_sigma()[-1].detach().exp()})

    def pretrain_loss(self, x0: Tensor, generator=None) -> LossOutput:
        """DDPM's ε-MSE on the same T-level chain: k ~ U{1..T}, ‖ε_φ(x_k, k) − ε‖² per dimension."""
        k = rnd.randint(1, self.schedule.num_levels + 1, (x0.shape[0],), generator=generator, device=x0.device)
        eps = rnd.randn_like(x0, generator)
        x_k = self.schedule.q_sample(x0, k, eps)
        loss = (self.eps_net(x_k, k).view_as(eps) - eps).pow(2).mean()
        return LossOutput(loss, {"pretrain_loss": loss.detach()})


def _velocity_var_from_weights(module, state_dict, prefix, *args) -> None:
    """Weights and checkpoints written before December 2026 hold s_j² as a buffer: take it as the
    sampler's state (a resumed run continues from it), not as an unexpected key."""
    old = state_dict.pop(prefix + "velocity_var", None)
    if old is not None:
        module.declare_state("velocity_var", old.to(module.velocity_var.device, module.velocity_var.dtype).clone())
