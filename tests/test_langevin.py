"""The recovery Langevin sampler and DRL's parameterisation, pinned to hand computations."""

import math

import pytest
import torch
from torch import nn

from ebmkit.energies import DRLScaledEnergy
from ebmkit.registry import ENERGIES, SAMPLERS, SCHEDULES

# specs/drl.md §3, T = 6: s_t² and the loss weights σ_1/σ_{t+1}
DRL_STEP = [2.10e-5, 1.73e-3, 4.69e-3, 7.92e-3, 1.07e-2, 1.92e-2]
DRL_WEIGHT = [1.000, 0.627, 0.512, 0.454, 0.419, 0.324]


class GaussianEnergy(nn.Module):
    """E(y, t) = ‖y‖² / (2τ²): a model whose recovery conditional is known in closed form."""

    def __init__(self, tau):
        super().__init__()
        self.tau = tau

    def forward(self, y, t):
        return (y**2).sum(1) / (2 * self.tau**2)


def test_drl_step_sizes_match_spec_table():
    s = SCHEDULES.build("drl")
    steps = s.langevin_step_sizes(2e-4, "sigma_ratio")
    for got, want in zip(steps.tolist(), DRL_STEP):
        assert got == pytest.approx(want, rel=6e-3)
    # CDRL's toy rule: s_t/σ_{t+1} = 0.518 at every level (specs/cdrl.md §3)
    c = SCHEDULES.build("cosine_logsnr")
    ratio = (c.langevin_step_sizes(2e-3, "constant") / c.betas[1:]).sqrt()
    assert torch.allclose(ratio, torch.full_like(ratio, 0.518), atol=1e-3)


def test_one_langevin_step_by_hand():
    schedule = SCHEDULES.build("drl")
    sampler = SAMPLERS.build({"name": "langevin", "n_steps": 1, "b_square": 2e-4, "noise_scale": 0.7}, schedule=schedule, shape=(2,))
    tau = 0.8
    energy = GaussianEnergy(tau)
    t = torch.tensor([0, 2, 4, 5])
    x_next = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    y0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    got = sampler.refine(y0, x_next, t, energy, 0.7, generator=torch.Generator().manual_seed(2))

    xi = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    for i, level in enumerate(t.tolist()):
        s2 = float(schedule.langevin_step_sizes(2e-4)[level])
        sigma2 = float(schedule.betas[level + 1])
        r = 0.0 if level == 5 else 1.0
        grad = y0[i] / tau**2
        want = y0[i] - 0.5 * s2 * grad - s2 / (2 * sigma2) * r * (y0[i] - x_next[i]) + 0.7 * math.sqrt(s2) * xi[i]
        assert torch.allclose(got[i], want, atol=1e-6), (level, got[i], want)


@pytest.mark.parametrize("level,noise_scale", [(2, 1.0), (4, 0.9)])
def test_long_chain_matches_the_exact_recovery_conditional(level, noise_scale):
    """p(y | x̃) ∝ exp(−‖y‖²/2τ² − ‖y − x̃‖²/2σ²) = N(v x̃/σ², v), v = (1/τ² + 1/σ²)⁻¹.

    Unadjusted Langevin with step h on a Gaussian of precision P keeps the mean and has
    stationary variance λ²/(P(1 − hP/4)): the test pins both, bias included.
    """
    schedule = SCHEDULES.build("drl")
    sampler = SAMPLERS.build({"name": "langevin", "n_steps": 400, "b_square": 2e-2}, schedule=schedule, shape=(2,))
    tau = 0.7
    n = 20_000
    t = torch.full((n,), level)
    x_next = torch.tensor([1.5, -0.5]).expand(n, 2)
    y = sampler.refine(x_next.clone(), x_next, t, GaussianEnergy(tau), noise_scale,
                       generator=torch.Generator().manual_seed(0)).double()
    sigma2 = float(schedule.betas[level + 1])
    h = float(schedule.langevin_step_sizes(2e-2)[level])
    precision = 1 / tau**2 + 1 / sigma2
    v = 1 / precision
    mean = v * x_next[0].double() / sigma2
    var = noise_scale**2 / (precision * (1 - h * precision / 4))
    assert torch.allclose(y.mean(0), mean, atol=4 * math.sqrt(var / n))
    assert torch.allclose(y.var(0), torch.full((2,), var, dtype=torch.float64), rtol=0.04)


def test_drl_energy_is_minus_network_over_step_size():
    schedule = SCHEDULES.build("drl")
    net = nn.Module()
    net.forward = lambda y, t: y.sum(1)
    energy = DRLScaledEnergy(DRLScaledEnergy.Options(), network=net, schedule=schedule)
    y = torch.ones(6, 2)
    t = torch.arange(6)
    want = torch.tensor([-2.0 / s for s in DRL_STEP])
    assert torch.allclose(energy(y, t), want, rtol=6e-3)
    assert torch.allclose(energy.output_scale(t), torch.tensor(DRL_STEP), rtol=6e-3)


def test_generation_divides_by_the_recovery_scale():
    """With a flat energy and no noise, each level's chain only feels the tether, which pulls
    y toward x̃; generation then maps y back to x_t = y / a_{t+1}."""
    schedule = SCHEDULES.build({"name": "drl", "num_levels": 3})
    sampler = SAMPLERS.build({"name": "langevin", "n_steps": 1, "b_square": 2e-4, "generate_noise_scale": 0.0},
                             schedule=schedule, shape=(2,))

    class Flat(nn.Module):
        def forward(self, y, t):
            return 0.0 * y.sum(1)

    g = torch.Generator().manual_seed(0)
    x = sampler.generate(5, Flat(), generator=g)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    want = x_T  # top level: scale 1, no tether, flat energy → unchanged
    for level in (1, 0):
        want = want / schedule.recovery_scale[level].item()  # chain starts at x̃ and stays there
    assert torch.allclose(x, want.float(), atol=1e-5)


def test_step_sizes_come_from_the_energy_unless_set():
    """DRL's f = g/s_t² and the chain share one s_t²: the sampler reads it from the energy."""
    schedule = SCHEDULES.build("drl")
    net = nn.Linear(2, 1)
    energy = ENERGIES.build({"name": "drl", "b_square": 2e-3, "c_rule": "constant"},
                            network=lambda y, t: net(y).squeeze(1), schedule=schedule)
    sampler = SAMPLERS.build("langevin", schedule=schedule, shape=(2,), energy=energy)
    assert torch.equal(sampler.step_sizes, energy.step_sizes)
    assert torch.allclose(sampler.step_sizes.double(), schedule.langevin_step_sizes(2e-3, "constant"))
    own = SAMPLERS.build({"name": "langevin", "b_square": 2e-4}, schedule=schedule, shape=(2,), energy=energy)
    assert torch.allclose(own.step_sizes.double(), schedule.langevin_step_sizes(2e-4), rtol=1e-6)
    scalar = ENERGIES.build("scalar", network=net, schedule=schedule)
    with pytest.raises(ValueError, match="set sampler.b_square"):
        SAMPLERS.build("langevin", schedule=schedule, shape=(2,), energy=scalar)


def test_generation_can_take_fewer_steps_than_training():
    """CDRL's Table 3 samples with K = 8, 5 or 3 per level from a model trained with K = 15:
    `generate_n_steps` sets the generation K and leaves the training chain alone."""
    schedule = SCHEDULES.build({"name": "cosine_logsnr", "num_levels": 3})
    energy = GaussianEnergy(0.5)

    def build(**options):
        return SAMPLERS.build({"name": "langevin", "b_square": 2e-3, **options}, schedule=schedule, shape=(2,))

    fewer, short, long = build(n_steps=5, generate_n_steps=2), build(n_steps=2), build(n_steps=5)
    sample = lambda s, n: s.generate(n, energy, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample(fewer, 4), sample(short, 4))
    assert not torch.allclose(sample(fewer, 4), sample(long, 4))

    from ebmkit.types import TrainingBatch

    x_next = torch.randn(4, 2, generator=torch.Generator().manual_seed(4))
    batch = TrainingBatch(positives=x_next, condition=x_next, level=torch.tensor([0, 1, 2, 0]), data=x_next)
    train = lambda s: s.sample(batch, energy, generator=torch.Generator().manual_seed(5)).negatives
    assert torch.equal(train(fewer), train(long))
