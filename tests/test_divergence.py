"""Recovery likelihood: training pairs, loss value and sign, pinned independently."""

import torch
from torch import nn

from ebmkit.registry import DIVERGENCES, ENERGIES, SCHEDULES
from ebmkit.samplers import TrainingBatch


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.3, -0.2]))

    def forward(self, y, t):
        return (y * self.w).sum(1) * (1 + t.float())


def test_loss_is_drl_code_loss_on_the_network_output():
    """DRL's code: loss = mean_t σ_1/σ_{t+1} · (g(y⁻, t) − g(y⁺, t)) with g the raw network."""
    schedule = SCHEDULES.build("drl")
    net = Linear()
    energy = ENERGIES.build("drl", network=net, schedule=schedule)
    div = DIVERGENCES.build("recovery_likelihood", schedule=schedule)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 1, 2, 3, 4, 5, 5, 0])
    pos, neg = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    batch = TrainingBatch(pos, pos, t, pos)
    loss = div.energy_loss(batch, neg, energy).loss
    sig = schedule.sigmas[1:]
    w = (sig[0] / sig)[t].float()
    want = (w * (net(neg, t) - net(pos, t))).mean()
    assert torch.allclose(loss, want, rtol=1e-4, atol=1e-6)

    uniform = DIVERGENCES.build({"name": "recovery_likelihood", "weighting": "uniform", "contrast": "energy"},
                                schedule=schedule)
    want_e = (energy(pos, t) - energy(neg, t)).mean()
    assert torch.allclose(uniform.energy_loss(batch, neg, energy).loss, want_e, rtol=1e-5)


def test_a_gradient_step_lowers_the_energy_of_positives_relative_to_negatives():
    schedule = SCHEDULES.build("drl")
    net = Linear()
    energy = ENERGIES.build("scalar", network=net, schedule=schedule)
    div = DIVERGENCES.build("recovery_likelihood", schedule=schedule)
    t = torch.zeros(64, dtype=torch.long)
    pos = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) + torch.tensor([2.0, 0.0])
    neg = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    batch = TrainingBatch(pos, pos, t, pos)
    gap = lambda: (energy(neg, t) - energy(pos, t)).mean().item()  # noqa: E731
    before = gap()
    div.energy_loss(batch, neg, energy).loss.backward()
    with torch.no_grad():
        net.w -= 0.1 * net.w.grad
    assert gap() > before


def test_training_batch_scales_positives_into_y_space():
    schedule = SCHEDULES.build("drl")
    div = DIVERGENCES.build("recovery_likelihood", schedule=schedule)
    x0 = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0))
    b = div.training_batch(x0, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 6, (4096,), generator=g)
    assert torch.equal(b.level, t)
    eps = torch.randn(x0.shape, generator=g)
    x_t = schedule.sqrt_alphas_cumprod[t].float()[:, None] * x0 + schedule.sigmas_cumprod[t].float()[:, None] * eps
    m = schedule.recovery_scale[t].float()[:, None]
    assert torch.allclose(b.positives, m * x_t, atol=1e-6)
    # x_{t+1} | x_t has mean a_{t+1} x_t = y (below the top level) and std σ_{t+1}
    below = t < 5
    resid = (b.condition - b.positives)[below] / schedule.sigmas[t + 1].float()[below][:, None]
    assert abs(resid.mean().item()) < 0.05 and abs(resid.std().item() - 1) < 0.05
