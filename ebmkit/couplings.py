"""Couplings: how a batch of source noise x₀ is paired with a batch of data x₁ before a flow-matching
interpolant x_t = t·x₁ + (1 − t)·x₀ is drawn between the pairs (specs/energy_matching.md §3.1).

``independent`` keeps the pairs as drawn (x₀ᵢ, x₁ᵢ). ``exact_ot`` is minibatch optimal transport
(Tong et al. 2023, OT-CFM; Pooladian et al. 2023) with the squared Euclidean cost on flattened vectors,

    Cᵢⱼ = ‖x₀ᵢ − x₁ⱼ‖²,   π* = argmin_π ⟨π, C⟩ over couplings of the two uniform marginals 1/B,

the plan that Energy Matching's code computes with POT's network simplex ``ot.emd`` (torchcfm
optimal_transport.py:84-145). For two batches of B points with uniform weights the optimal plan is a
permutation (Birkhoff–von Neumann), so the exact solver here is the assignment problem,
``scipy.optimize.linear_sum_assignment`` on C: the same plan up to ties. With ``resample`` (the
official code's ``sample_plan(replace=True)``) B pairs are drawn i.i.d. from π, which for a
permutation is B uniform draws, with replacement, of its B pairs: about 63 % of them distinct.

A coupling is a registered component (``ebmkit.registry.COUPLINGS``; ``ebmkit list couplings``),
named by a divergence's ``coupling`` option (`energy_matching`); any divergence that draws noise to
pair with data can take the same option.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

import ebmkit.random as rnd
from ebmkit.registry import COUPLINGS, Options


class Coupling:
    """Pairs source noise with data: ``coupling(x0, x1, generator)`` → (x0, x1) re-indexed pair by pair."""

    Options = None

    def __init__(self, options=None):
        self.config = options

    def __call__(self, x0: Tensor, x1: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


@COUPLINGS.register("independent")
class IndependentCoupling(Coupling):
    """Independent pairs: (x₀ᵢ, x₁ᵢ) as drawn, the coupling of plain conditional flow matching."""

    def __call__(self, x0: Tensor, x1: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        return x0, x1


def ot_assignment(x0: Tensor, x1: Tensor) -> Tensor:
    """σ with Σᵢ ‖x₀ᵢ − x₁_σ(i)‖² minimal over permutations: the exact OT plan between two equal
    uniform batches, on the flattened vectors, solved in float64 on the CPU."""
    from scipy.optimize import linear_sum_assignment

    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"exact_ot pairs batches of equal size, got {x0.shape[0]} and {x1.shape[0]}")
    a, b = x0.detach().flatten(1).double().cpu(), x1.detach().flatten(1).double().cpu()
    cost = torch.cdist(a, b).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    assert np.array_equal(rows, np.arange(len(rows)))  # scipy returns the rows in order
    return torch.as_tensor(cols, dtype=torch.long, device=x1.device)


@COUPLINGS.register("exact_ot")
class ExactOTCoupling(Coupling):
    """Exact minibatch optimal transport, squared Euclidean cost (OT-CFM; Energy Matching): the OT
    permutation, resampled with replacement as the official code does, or as it is."""

    class Options(Options):
        resample: bool = Field(True, description="draw B pairs i.i.d. from the plan, with replacement (Energy "
                                                 "Matching's torchcfm sample_plan); false: every OT pair once")

    def __call__(self, x0: Tensor, x1: Tensor, generator=None) -> tuple[Tensor, Tensor]:
        sigma = ot_assignment(x0, x1)
        if not self.config.resample:
            return x0, x1[sigma]
        pick = rnd.randint(0, x0.shape[0], (x0.shape[0],), generator, x0.device)
        return x0[pick], x1[sigma[pick]]
