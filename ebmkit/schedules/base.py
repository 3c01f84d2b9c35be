"""The noise-schedule contract: a discrete, variance-preserving forward process.

Level 0 is data (up to the tiny noise some papers keep there), level T is close to N(0, I).
A schedule is fully described by its table ``alphas_cumprod`` (ᾱ_t, the signal variance kept
at level t); every other coefficient is derived here, once, in float64.

    marginal   q(x_t | x_0)       = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
    one step   q(x_{t+1} | x_t)   = N(√α_{t+1} x_t, β_{t+1} I),     α_t = ᾱ_t / ᾱ_{t−1}
    posterior  q(x_t | x_{t+1}, x_0) = N(c0_t x_0 + c1_t x_{t+1}, β̃_t I)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated, Literal, Optional, Union

import torch
from pydantic import Field
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.compose import Declares
from ebmkit.registry import Options


class ScheduleOptions(Options):
    untethered_top: bool = True
    """Model the top pair (x_{T−1}, x_T) as a marginal EBM of x_{T−1} (DRL and CDRL code)."""


class StepCapOptions(Options):
    """The two options of `NoiseSchedule.langevin_step_sizes`' cap, shared by every component
    whose Langevin step follows that rule (DRL's energy, the `langevin` sampler's own b²)."""

    local_scale: Optional[Union[Annotated[float, Field(gt=0)], Literal["auto"]]] = Field(
        "auto", description="ℓ of the step cap, in the model's units; 'auto': measured from the training data before "
                            "step 1 (ebmkit.data.summary); null: no cap")
    step_cap: float = Field(1.0, gt=0, description="κ of s_t ≤ κ r_t √(ᾱ_t ℓ² + σ̄_t²): the largest step, in local "
                                                   "scales of the level's marginal")

    @property
    def cap_scale(self) -> float | None:
        """ℓ, or None for no cap ('auto' not yet measured: a model built without its data)."""
        return None if self.local_scale == "auto" else self.local_scale

    def fitted(self, data) -> "StepCapOptions":
        """'auto' replaced by the data's measured local scale (`ebmkit.types.DataSummary`)."""
        return self.model_copy(update={"local_scale": data.local_scale}) if self.local_scale == "auto" else self


def _gather(table: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """table[t], shaped to broadcast against ``like`` (batch first) and cast to its dtype."""
    out = table.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.reshape(out.shape + (1,) * (like.dim() - out.dim()))


class NoiseSchedule(ABC, Declares):
    Options = ScheduleOptions

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        """'level0_noise' when σ̄_0 > 0 (the schedule's tables are cheap to build)."""
        return frozenset({"level0_noise"}) if cls(options).sigmas_cumprod[0] > 0 else frozenset()

    def __init__(self, options: ScheduleOptions):
        self.config = options
        abar = torch.as_tensor(self.make_alphas_cumprod(), dtype=torch.float64).flatten()
        if abar.numel() < 2:
            raise ValueError(f"{type(self).__name__}: need at least one noising step")
        if not (torch.all(abar > 0) and torch.all(abar <= 1) and torch.all(abar[1:] < abar[:-1])):
            raise ValueError(f"{type(self).__name__}: ᾱ must decrease strictly inside (0, 1], got {abar.tolist()}")
        prev = torch.cat([abar.new_ones(1), abar[:-1]])
        self.alphas_cumprod = abar  # ᾱ_t
        self.alphas = abar / prev  # α_t = ᾱ_t / ᾱ_{t−1}, with α_0 = ᾱ_0
        self.betas = 1 - self.alphas  # β_t, the variance added by step t
        self.sqrt_alphas_cumprod = abar.sqrt()  # √ᾱ_t, marginal scale
        self.sigmas_cumprod = (1 - abar).sqrt()  # σ̄_t, marginal std
        self.sqrt_alphas = self.alphas.sqrt()  # a_t, one-step scale
        self.sigmas = self.betas.sqrt()  # σ_t, one-step std
        self.log_snr = abar.log() - (1 - abar).log()  # λ_t; +inf where ᾱ_t = 1

        # q(x_t | x_{t+1}, x_0) for t = 0..T−1 (DDPM Eq. 7, shifted by one level)
        a_t, a_next, b_next = abar[:-1], abar[1:], self.betas[1:]
        self.posterior_variance = b_next * (1 - a_t) / (1 - a_next)
        self.posterior_coef_x0 = b_next * a_t.sqrt() / (1 - a_next)
        self.posterior_coef_xnext = (1 - a_t) * self.alphas[1:].sqrt() / (1 - a_next)

        # Recovery-likelihood view of pair (x_t, x_{t+1}) (DRL §2): the EBM of level t lives on
        # y = a_{t+1} x_t, where q(x_{t+1} | x_t) is a Gaussian tether N(y, σ²_{t+1}) around y.
        T = self.num_levels
        self.recovery_scale = self.sqrt_alphas[1:].clone()
        self.recovery_tether = torch.ones(T, dtype=torch.float64)
        if options.untethered_top:
            self.recovery_scale[T - 1] = 1.0
            self.recovery_tether[T - 1] = 0.0

    @abstractmethod
    def make_alphas_cumprod(self) -> Tensor:
        """ᾱ_0 … ᾱ_T."""

    @property
    def num_levels(self) -> int:
        """T: the number of noising steps (levels are 0..T)."""
        return self.alphas_cumprod.numel() - 1

    def levels(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """t ~ Uniform{0..T−1}: the lower level of a training pair."""
        return rnd.randint(0, self.num_levels, (n,), generator=generator, device=device)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None, generator=None) -> Tensor:
        """x_t = √ᾱ_t x_0 + σ̄_t ε."""
        if noise is None:
            noise = rnd.randn_like(x0, generator)
        return _gather(self.sqrt_alphas_cumprod, t, x0) * x0 + _gather(self.sigmas_cumprod, t, x0) * noise

    def q_step(self, x_t: Tensor, t: Tensor, noise: Tensor | None = None, generator=None) -> Tensor:
        """One forward step t → t+1: x_{t+1} = a_{t+1} x_t + σ_{t+1} ε."""
        if noise is None:
            noise = rnd.randn_like(x_t, generator)
        return _gather(self.sqrt_alphas, t + 1, x_t) * x_t + _gather(self.sigmas, t + 1, x_t) * noise

    def q_pair(self, x0: Tensor, t: Tensor, shared_noise: bool = False, generator=None) -> tuple[Tensor, Tensor]:
        """(x_t, x_{t+1}) with the marginals of q.

        ``shared_noise=False`` draws the exact joint (x_t from the marginal, then one step).
        ``shared_noise=True`` is CDRL's variance reduction: x_t and x_{t+1} both from the
        marginal with the same ε — right marginals, wrong joint, lower-variance gradients.
        """
        eps = rnd.randn_like(x0, generator)
        x_t = self.q_sample(x0, t, eps)
        if shared_noise:
            return x_t, self.q_sample(x0, t + 1, eps)
        return x_t, self.q_step(x_t, t, generator=generator)

    def q_posterior(self, x_next: Tensor, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_t | x_{t+1}, x_0)."""
        mean = _gather(self.posterior_coef_x0, t, x0) * x0 + _gather(self.posterior_coef_xnext, t, x0) * x_next
        return mean, _gather(self.posterior_variance, t, x0)

    def prior_sample(self, shape, generator=None, device=None, dtype=torch.float32) -> Tensor:
        """x_T ~ N(0, I)."""
        return rnd.randn(shape, generator=generator, device=device, dtype=dtype)

    def langevin_step_sizes(self, b_square: float, c_rule: str = "sigma_ratio", local_scale: float | None = None,
                            step_cap: float = 1.0) -> Tensor:
        """s_t² = b² c_t σ²_{t+1}, t = 0..T−1: the recovery Langevin step of DRL §3 / CDRL §3.

        c_t = σ̄_t / σ̄_0 ("sigma_ratio", DRL and CDRL's image code: a ratio of stds) or
        1 / σ̄_0 ("constant", CDRL's 2D code), so that the step grows with the noise level.

        With the data's local scale ℓ (`ebmkit.data.summary.local_scale`), s_t is capped at

            s_t ≤ step_cap · r_t √(ᾱ_t ℓ² + σ̄_t²),

        ``step_cap`` times the local scale of level t's marginal in y = r_t x_t. A Langevin step on
        a mode of std σ is stable for s < 2σ only, so without the cap a chain tuned for broad modes
        overshoots narrow ones and its negatives run away (DRL's 2D rule on 25gaussians: s_0 ≈ 0.14
        against modes of std 0.035). Where the data is broader than the step, the cap is inactive.
        """
        if self.sigmas_cumprod[0] <= 0:
            raise ValueError("langevin_step_sizes needs σ̄_0 > 0 (a schedule whose level 0 keeps some noise)")
        if c_rule == "sigma_ratio":
            c = self.sigmas_cumprod[:-1] / self.sigmas_cumprod[0]
        elif c_rule == "constant":
            c = torch.full((self.num_levels,), 1.0, dtype=torch.float64) / self.sigmas_cumprod[0]
        else:
            raise ValueError(f"c_rule must be 'sigma_ratio' or 'constant', got {c_rule!r}")
        step = b_square * c * self.betas[1:]
        if local_scale is None:
            return step
        marginal = self.alphas_cumprod[:-1] * local_scale**2 + self.sigmas_cumprod[:-1] ** 2
        return torch.minimum(step, step_cap**2 * self.recovery_scale**2 * marginal)

    def gather(self, table: Tensor, t: Tensor, like: Tensor) -> Tensor:
        return _gather(table, t, like)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(T={self.num_levels}, {self.config!r})"
