"""Persistent chains from a replay buffer: the sampler of persistent contrastive divergence
(IGEBM, Du & Mordatch 2019; JEM, Grathwohl et al. 2020). Formulas: specs/pcd.md §2–§4.

Each training step draws B chain starts: a uniformly drawn buffer entry with probability 1 − ρ,
else fresh noise from the source p₀ (§3). K steps of stochastic gradient Langevin dynamics as
the codes run it, with the step λ and the noise σ_n decoupled (§4),

    x ← Π( x − λ · clip_g(∇ₓE(x, 0)) + σ_n ξ ),   ξ ~ N(0, I),

Π a clamp to a box and clip_g an elementwise clip of the gradient (both optional), turn them
into the negatives; then the negatives go back into the buffer. The effective temperature is
τ = σ_n² / (2λ): τ = 1 (λ = η/2, σ_n = √η) is a Langevin sampler of exp(−E), while the image
codes run far colder (JEM τ = 5e-5).

The buffer is declared state (`Sampler.declare_state`): checkpointed and resumed bitwise, one per
data-parallel rank, never averaged into the EMA model or exported. It is declared empty and filled
with p₀ noise at the first step, as JEM does. A model rebuilt from its weights has no buffer, so
generation always runs a chain from p₀.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.registry import SAMPLERS
from ebmkit.samplers.base import Sampler, SamplerOptions
from ebmkit.samplers.sources import Box, Source, SourceOptions
from ebmkit.types import SampleRecord, TrainingBatch


def write_rows(buffer: Tensor, slots: Tensor, values: Tensor) -> None:
    """buffer[slots] = values in place; where a slot repeats, the last of its rows is written
    (``buffer[slots] = values`` leaves that to the backend)."""
    order = torch.arange(slots.shape[0], device=slots.device)
    last = torch.full((buffer.shape[0],), -1, dtype=torch.long, device=slots.device)
    last.scatter_reduce_(0, slots, order, reduce="amax")
    keep = last[slots] == order
    buffer[slots[keep]] = values[keep].to(buffer.dtype)


@SAMPLERS.register("replay")
class ReplaySampler(Sampler):
    """Persistent CD: K SGLD steps from a replay buffer of past negatives, ρ of them restarted from noise (IGEBM, JEM).

    The options' defaults are JEM's chain. IGEBM's values are quoted in its own pixels x ∈ [0, 1];
    ebmkit's are x' = 2x − 1, where its λ is 4×, σ_n 2× and the gradient clip ½× as large and its
    clamp [0, 1] is [−1, 1] (`pcd_cifar10`).
    """

    needs_schedule = False  # one energy, at level 0

    class Options(SamplerOptions, SourceOptions):
        source: Source = Field(default_factory=lambda: Source(name="uniform", low=-1.0, high=1.0),
                               description="p₀, where new chains start, in the model's units (JEM: U(−1, 1), "
                                           "the image range)")
        buffer_size: int = Field(10_000, ge=1, description="entries of the replay buffer, per process (IGEBM, JEM, "
                                                           "ICD: 10,000)")
        reinit_prob: float = Field(0.05, ge=0, le=1, description="ρ: the chance that a chain starts from p₀ instead "
                                                                 "of the buffer (IGEBM, JEM: 0.05)")
        write_back: Literal["indexed", "fifo"] = Field(
            "indexed", description="'indexed': each negative overwrites the entry its chain was drawn from, so "
                                   "chains persist (JEM); 'fifo': the batch goes into a ring, oldest entries first "
                                   "(IGEBM)")
        n_steps: int = Field(20, ge=1, description="K, SGLD steps per training step (JEM: 20, IGEBM: 60)")
        step_size: float = Field(1.0, gt=0, description="λ, the step on ∇ₓE (JEM: 1, IGEBM: 10)")
        noise_std: float = Field(0.01, ge=0, description="σ_n, the std of each step's Gaussian noise (JEM: 0.01, "
                                                         "IGEBM: 0.005)")
        grad_clip_value: Optional[float] = Field(None, gt=0, description="clip each component of ∇ₓE to ± this "
                                                                          "(IGEBM: 0.01); null: no clip")
        clamp: Optional[Box] = Field(None, description="[low, high]: clamp the chain to this box "
                                                                       "after every step (IGEBM: [0, 1]); null: none")
        noise_before_grad: bool = Field(False, description="add the noise first and take the gradient at the noised "
                                                           "point (IGEBM, ICD); false: gradient, then noise (JEM)")
        generate_n_steps: Optional[int] = Field(None, ge=1, description="K of generation's chain from p₀; null: "
                                                                         "n_steps")

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset({"fresh_samples"})  # level-0 negatives, independent of the training batch

    def __init__(self, options, *, schedule, shape, energy=None, data_energy=None):
        super().__init__(options, schedule=schedule, shape=shape, energy=energy, data_energy=data_energy)
        # declared from the start, empty until the first step fills it: a checkpoint written before
        # that step (step 0) then holds the empty buffer, and a rollback to it empties the buffer again
        self.declare_state("buffer", torch.empty((0, *self.shape)))
        if options.write_back == "fifo":
            self.declare_state("position", torch.zeros((), dtype=torch.long))

    # -- the chain -----------------------------------------------------------------------------
    def chain(self, x: Tensor, energy, generator=None, n_steps: int | None = None) -> Tensor:
        """K steps of specs/pcd.md §4 from x; no graph is kept. One N(0, I) draw per step whatever
        σ_n, so the stream does not depend on its value."""
        c = self.config
        x = x.detach()
        for _ in range(c.n_steps if n_steps is None else n_steps):
            if c.noise_before_grad:  # IGEBM train.py:735-750, ICD train.py:247-255
                x = x + c.noise_std * rnd.randn_like(x, generator)
            with torch.enable_grad():
                x.requires_grad_(True)
                (grad,) = torch.autograd.grad(self.data_energy(energy, x).sum(), x)
            if c.grad_clip_value is not None:  # IGEBM's elementwise projection, train.py:755-763
                grad = grad.clamp(-c.grad_clip_value, c.grad_clip_value)
            x = x.detach() - c.step_size * grad
            if not c.noise_before_grad:  # JEM train_wrn_ebm.py:230-231
                x = x + c.noise_std * rnd.randn_like(x, generator)
            if c.clamp is not None:  # IGEBM train.py:777
                x = x.clamp(c.clamp[0], c.clamp[1])
        return x.detach()

    # -- training: starts from the buffer, negatives back into it -------------------------------
    def buffer(self, generator=None, device=None) -> Tensor:
        """The replay buffer, filled with p₀ noise on first use (JEM train_wrn_ebm.py:117)."""
        if self.declared_state["buffer"].shape[0] == 0:
            self.declare_state("buffer", self.start(self.config.buffer_size, generator, device))
            if self.config.write_back == "fifo":
                self.declare_state("position", torch.zeros((), dtype=torch.long, device=device))
        return self.declared_state["buffer"]

    def starts(self, n: int, generator=None, device=None) -> tuple[Tensor, Tensor, Tensor]:
        """(x⁻₀, the buffer index of each chain, which chains were restarted from p₀), drawn in
        JEM's order: indices, then p₀ for every chain, then the restart coin per chain
        (train_wrn_ebm.py:202-215)."""
        buffer = self.buffer(generator, device)
        index = rnd.randint(0, buffer.shape[0], (n,), generator, device)
        fresh = self.start(n, generator, device)
        reinit = rnd.rand((n,), generator, device) < self.config.reinit_prob
        mask = reinit.view(-1, *[1] * (fresh.dim() - 1))
        return torch.where(mask, fresh, buffer[index].to(fresh.dtype)), index, reinit

    def write_back(self, negatives: Tensor, index: Tensor) -> None:
        """'indexed': entry index[i] ← x⁻_i, restarted chains included (JEM :235-236); 'fifo': the
        batch goes into the ring at its position, which moves on by B (IGEBM utils.py:56-68)."""
        buffer = self.declared_state["buffer"]
        if self.config.write_back == "indexed":
            write_rows(buffer, index, negatives)
        else:
            position = self.declared_state["position"]
            slots = (position + torch.arange(negatives.shape[0], device=buffer.device)) % buffer.shape[0]
            write_rows(buffer, slots, negatives)
            self.declare_state("position", (position + negatives.shape[0]) % buffer.shape[0])
        self.declare_state("buffer", buffer)

    def sample(self, batch: TrainingBatch, energy, generator=None) -> SampleRecord:
        n, device = batch.positives.shape[0], batch.positives.device
        x0, index, reinit = self.starts(n, generator, device)
        negatives = self.chain(x0, energy, generator)
        self.write_back(negatives, index)
        return SampleRecord(negatives, {"reinit": reinit})

    # -- generation: a chain from p₀ --------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, energy, generator=None) -> Tensor:
        """``generate_n_steps`` steps from p₀ (the buffer is training state; a saved model has none)."""
        device = next(energy.parameters()).device
        x = self.chain(self.start(n, generator, device), energy, generator,
                       self.config.generate_n_steps or self.config.n_steps)
        return self.finish(x, energy)
