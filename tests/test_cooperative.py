"""CDRL's cooperative sampler: proposal, the initializer's update, Tweedie, and the recipe."""

import pytest
import torch
from torch import nn

from ebmkit import Recipe
from ebmkit.recipes import COMPONENTS
from ebmkit.registry import ENERGIES, NETWORKS, SAMPLERS, SCHEDULES
from ebmkit.registry import DIVERGENCES
from ebmkit.samplers import energy_denoise
from ebmkit.model import EnergyModel
from ebmkit.training import Trainer
from ebmkit.types import TrainingBatch


class LinearInit(nn.Module):
    """NN_φ(x, t) = A x, so μ_φ(x) = x + A x: an initializer whose gradient is easy by hand."""

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[0.1, -0.2], [0.05, 0.3]]))

    def forward(self, x, t):
        return x @ self.A.T


class Quadratic(nn.Module):
    def forward(self, y, t):
        return (y**2).sum(1) / (2 * 0.5**2)


def _sampler(**options):
    schedule = SCHEDULES.build("cosine_logsnr")
    energy = ENERGIES.build({"name": "drl", "b_square": 2e-3, "c_rule": "constant"},
                            network=NETWORKS.build("mlp", dim=2, num_levels=6), schedule=schedule)
    sampler = SAMPLERS.build({"name": "cooperative", "refine": {"name": "langevin", "n_steps": 3}, **options},
                             schedule=schedule, shape=(2,), energy=energy)
    return schedule, sampler


def test_initializer_starts_as_the_identity():
    _, sampler = _sampler()
    x = torch.randn(7, 2)
    t = torch.randint(0, 6, (7,))
    assert torch.equal(sampler.initializer(x, t + 1), torch.zeros(7, 2))  # μ_φ(x) = x at init


def test_initializer_update_by_hand():
    schedule, sampler = _sampler()
    sampler.initializer = LinearInit()
    energy = Quadratic()
    n = 5
    x_next = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2, 4, 5])
    batch = TrainingBatch(x_next, x_next, t, x_next)

    record = sampler.sample(batch, energy, generator=torch.Generator().manual_seed(1))
    y_k = record.negatives
    out = sampler.loss(batch, record, energy)
    out.loss.backward()

    # by hand: y⁰ = x + A x + √β̃_t m_t ξ, with ξ the generator's first draw
    A = torch.tensor([[0.1, -0.2], [0.05, 0.3]])
    g = torch.Generator().manual_seed(1)
    xi = torch.randn(n, 2, generator=g)
    std = (schedule.posterior_variance[t] * schedule.recovery_scale[t] ** 2).sqrt().float()[:, None]
    y0 = x_next + x_next @ A.T + std * xi
    # the refinement is the langevin sampler's, from y⁰ with the same generator continuing
    want_yk = sampler.refiner.refine(y0, x_next, t, energy, 1.0, generator=g)
    assert torch.allclose(y_k, want_yk, atol=1e-6)
    d = want_yk - y0  # L = mean_b ‖y^K_b − y⁰_b‖², y⁰ = (I + A) x + noise
    assert out.loss.item() == pytest.approx(d.pow(2).sum(1).mean().item(), rel=1e-5)
    grad_A = -2 * (d.T @ x_next) / n  # dL/dA = −2/n Σ_b (y^K_b − y⁰_b) x_bᵀ
    assert torch.allclose(sampler.initializer.A.grad, grad_A, atol=1e-5)
    assert torch.allclose(record.saved["proposal"].detach(), y0, atol=1e-6)  # the proposal travels in the record
    parked = {k: v for k, v in vars(sampler).items() if isinstance(v, torch.Tensor)}
    assert parked == {}, "nothing is parked on the sampler between calls"


def test_tweedie_by_hand():
    schedule = SCHEDULES.build("cosine_logsnr")
    divergence = DIVERGENCES.build("recovery_likelihood", schedule=schedule)
    x0 = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    out = energy_denoise(x0, lambda x: divergence.data_energy(Quadratic(), x), schedule, scale=2.0)
    m = float(schedule.recovery_scale[0])
    grad = m * (m * x0) / 0.5**2  # ∇_x E(m x, 0) for E(y) = ‖y‖²/(2·0.25): level 0 lives on y = m x
    want = (x0 - 2.0 * float(1 - schedule.alphas_cumprod[0]) * grad) / float(schedule.sqrt_alphas_cumprod[0])
    assert torch.allclose(out, want, atol=1e-6)


def test_cooperative_generation_ends_with_the_denoising_step_when_asked():
    recipe = Recipe.from_name("cdrl").override({"sampler.refine.n_steps": 2})
    plain = EnergyModel(recipe, (2,))
    denoised = EnergyModel(recipe.override({"sampler.denoise": True}), (2,))
    denoised.load_state_dict(plain.state_dict())
    x = plain.generate(64, generator=torch.Generator().manual_seed(0))
    y = denoised.generate(64, generator=torch.Generator().manual_seed(0))
    want = energy_denoise(x, plain.data_energy, plain.schedule, scale=2.0)  # CDRL code's scale
    assert not torch.allclose(x, y)
    assert torch.allclose(y, want, atol=1e-5)


def test_refine_stage_must_be_a_refiner():
    schedule = SCHEDULES.build("cosine_logsnr")
    energy = ENERGIES.build("drl", network=NETWORKS.build("mlp", dim=2, num_levels=6), schedule=schedule)
    with pytest.raises(ValueError, match="refine"):
        SAMPLERS.build({"name": "cooperative", "refine": "cooperative"}, schedule=schedule, shape=(2,), energy=energy)


def test_cdrl_is_drl_with_its_practical_designs_swapped_in():
    """The recipe is a declarative assembly: DRL plus CDRL's sampler, schedule and pairing."""
    cdrl = Recipe.from_name("cdrl")
    swapped = Recipe.from_name("drl").override({
        "sampler": cdrl.sampler,
        "schedule": "cosine_logsnr",
        "divergence.shared_noise": True,
        "energy.b_square": 2e-3, "energy.c_rule": "constant",  # already drl's 2D preset
        "energy.step_cap": 1.0,  # CDRL's chain needs the default cap where DRL's takes 1.6
    })
    for field in COMPONENTS:
        if field != "data":
            assert getattr(swapped, field) == getattr(cdrl, field), field
    assert swapped.sampler["refine"]["name"] == "langevin"  # reused, not a copy


def _tiny_cdrl(**train):
    return Recipe.from_name("cdrl").override({
        "network.width": 16, "network.depth": 1, "sampler.initializer.width": 8, "sampler.refine.n_steps": 2,
        "train.batch_size": 32, "train.checkpoint_every": 3, "train.lr_schedule": "constant",
        **{f"train.{k}": v for k, v in train.items()},
    })


def test_both_parameter_groups_train_and_resume_exactly(tmp_path):
    from ebmkit.training.checkpoint import load_checkpoint

    straight = Trainer(_tiny_cdrl(steps=6), tmp_path / "a", progress=False)
    straight.fit()
    init0 = Trainer(_tiny_cdrl(steps=6), tmp_path / "unused", progress=False)
    init0._setup()
    before = {k: v.clone() for k, v in init0.model.sampler.state_dict().items()}
    after = straight.model.sampler.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the initializer learned

    Trainer(_tiny_cdrl(steps=3), tmp_path / "b", progress=False).fit()
    Trainer(_tiny_cdrl(steps=6), tmp_path / "b", resume=True, progress=False).fit()
    fa, _ = load_checkpoint(tmp_path / "a" / "checkpoint")
    fb, state = load_checkpoint(tmp_path / "b" / "checkpoint")
    assert set(state["optimizers"]) == {"energy", "sampler"}
    for name in ("model", "ema", "optimizer"):
        for key in fa[name]:
            assert torch.equal(fa[name][key], fb[name][key]), f"{name}:{key}"


class AffinePerLevel(nn.Module):
    """NN_φ(x, t) = A_t x + b_t (diagonal): least squares has a closed form to compare with."""

    def __init__(self, levels):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(levels + 1, 2))
        self.b = nn.Parameter(torch.zeros(levels + 1, 2))

    def forward(self, x, t):
        return self.A[t] * x + self.b[t]


def test_pretraining_makes_the_initializer_the_posterior_mean():
    # data N(m, v I): (x_t, x_{t+1}) is jointly Gaussian, so E[a_{t+1} x_t | x_{t+1}] is affine in x_{t+1}
    schedule, sampler = _sampler()
    T = schedule.num_levels
    sampler.initializer = AffinePerLevel(T)
    m, v = torch.tensor([1.5, -0.5]), 0.25
    opt = torch.optim.Adam(sampler.initializer.parameters(), lr=2e-2)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1500)  # to average out the minibatch noise
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        x0 = m + v**0.5 * torch.randn(1024, 2, generator=g)
        out = sampler.pretrain_loss(x0, generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        decay.step()
    assert set(out.metrics) == {"pretrain_loss"}
    s = {k: getattr(schedule, k).double() for k in ("sqrt_alphas_cumprod", "sigmas_cumprod", "sqrt_alphas", "sigmas")}
    for t in range(T):
        mean_t = s["sqrt_alphas_cumprod"][t] * m.double()
        var_t = s["sqrt_alphas_cumprod"][t] ** 2 * v + s["sigmas_cumprod"][t] ** 2
        a, sig = s["sqrt_alphas"][t + 1], s["sigmas"][t + 1]
        k = a * var_t / (a**2 * var_t + sig**2)  # Cov(x_t, x_{t+1}) / Var(x_{t+1})
        r = schedule.recovery_scale[t].double()
        slope, intercept = r * k, r * (mean_t - k * a * mean_t)  # μ(x) = (1 + A_t) x + b_t
        A, b = sampler.initializer.A[t + 1].detach().double(), sampler.initializer.b[t + 1].detach().double()
        assert torch.allclose(1 + A, slope.expand(2), atol=0.015), (t, 1 + A, slope)
        assert torch.allclose(b, intercept, atol=0.015), (t, b, intercept)


def test_pretraining_phase_trains_the_initializer_alone(tmp_path):
    trainer = Trainer(_tiny_cdrl(steps=1, pretrain_steps=20, pretrain_lr=1e-2), tmp_path, progress=False)
    trainer._setup()
    before = {k: p.detach().clone() for k, p in trainer.model.named_parameters()}
    trainer._pretrain()
    changed = {k for k, p in trainer.model.named_parameters() if not torch.equal(before[k], p)}
    assert changed and all(k.startswith("sampler.initializer.") for k in changed)


def test_regression_weight_adds_the_pretraining_loss_on_fresh_pairs():
    schedule, sampler = _sampler(regression_weight=0.5)
    sampler.initializer = LinearInit()
    x0 = torch.randn(9, 2, generator=torch.Generator().manual_seed(0))
    batch = DIVERGENCES.build({"name": "recovery_likelihood", "shared_noise": True},
                              schedule=schedule).training_batch(x0, generator=torch.Generator().manual_seed(1))
    record = sampler.sample(batch, Quadratic(), generator=torch.Generator().manual_seed(2))
    y_k, y0 = record.negatives, record.saved["proposal"].detach()
    out = sampler.loss(batch, record, Quadratic(), generator=torch.Generator().manual_seed(3))
    # by hand: the cooperative term on the batch, plus ½ × the regression on pairs drawn from x0 by that generator
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 6, (9,), generator=g)
    x_t, x_next = schedule.q_pair(x0, t, generator=g)
    y = schedule.recovery_scale[t].float()[:, None] * x_t
    regression = (y - (x_next + x_next @ sampler.initializer.A.T)).pow(2).sum(1).mean()
    cooperative = (y_k - y0).pow(2).sum(1).mean()
    assert out.metrics["regression_loss"].item() == pytest.approx(regression.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(cooperative.item() + 0.5 * regression.item(), rel=1e-5)
    out.loss.backward()
    assert sampler.initializer.A.grad.abs().sum() > 0
