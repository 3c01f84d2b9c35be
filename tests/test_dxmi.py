"""DxMI: the dp_policy sampler (DxDP), the gcd divergence and the recipe, each formula pinned
against a computation done here by hand (closed forms of a linear-Gaussian chain, finite
differences, the spec's tables)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.model import EnergyModel
from ebmkit.networks.init import zero_output_layer
from ebmkit.registry import DIVERGENCES, SAMPLERS, SCHEDULES
from ebmkit.samplers.dp_policy import level_of_step, sigmoid_time_cost
from ebmkit.testing import DivergenceContract, SamplerContract
from ebmkit.training import Trainer
from ebmkit.types import TrainingBatch

SMALL_NET = {"name": "mlp", "width": 16, "depth": 1, "activation": "silu"}
LINEAR3 = {"name": "ddpm_linear", "num_levels": 3, "beta_start": 0.1, "beta_end": 0.3}


def _policy(schedule_spec=LINEAR3, **options):
    schedule = SCHEDULES.build(schedule_spec)
    sampler = SAMPLERS.build({"name": "dp_policy", "network": SMALL_NET, **options}, schedule=schedule, shape=(2,))
    return schedule, sampler


def _batch(n):
    x = torch.zeros(n, 2)
    return TrainingBatch(positives=x, condition=x, level=torch.zeros(n, dtype=torch.long), data=x)


class QuadraticValue(nn.Module):
    """V(x, k) = a_k ‖x‖² + b_k; level 0 (E = ‖x‖²) is pinned by a = 1, b = 0 there."""

    def __init__(self, num_levels):
        super().__init__()
        self.a = nn.Parameter(torch.ones(num_levels + 1))
        self.b = nn.Parameter(torch.zeros(num_levels + 1))

    def forward(self, x, t):
        return self.a[t] * x.pow(2).sum(1) + self.b[t]


class TimeLinear(nn.Module):
    """ε_φ(x, k) = tanh(W [x, k]): a small level-dependent network that runs in any dtype."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x, t):
        return torch.tanh(self.lin(torch.cat([x, t[:, None].to(x.dtype)], 1)))


def _linear_chain(schedule, sampler):
    """With ε_φ ≡ 0 the policy is x_{k−1} = m_k x_k + σ_{k−1} ε, m_k = c0_{k−1}/√ᾱ_k + c1_{k−1}."""
    s = schedule
    T = s.num_levels
    m = [None] + [float(s.posterior_coef_x0[k - 1] / s.sqrt_alphas_cumprod[k] + s.posterior_coef_xnext[k - 1])
                  for k in range(1, T + 1)]
    sigma = sampler.log_sigma().exp().double().tolist()
    return m, sigma


# -- index mapping and the time cost ------------------------------------------------------------
def test_dxmi_steps_map_to_levels_counted_from_the_data():
    assert [level_of_step(t, 5) for t in range(5)] == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="0..4"):
        level_of_step(5, 5)
    # a trajectory by level: index T is the prior draw (DxMI's x_0), index 0 the sample (DxMI's x_T)
    _, sampler = _policy()
    states = sampler.trajectory(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(states[3], torch.randn((4, 2), generator=torch.Generator().manual_seed(3)))
    record = sampler.sample(_batch(4), None, generator=torch.Generator().manual_seed(3))
    assert torch.equal(record.negatives, states[0])
    assert all(torch.equal(a, b) for a, b in zip(record.saved["trajectory"], states, strict=True))


def test_sigmoid_time_cost_matches_the_spec_table():
    table = [.0113, .0294, .0718, .1497, .2311, .2311, .1497, .0718, .0294, .0113]  # specs/dxmi.md §4.3(b)
    assert torch.allclose(sigmoid_time_cost(10), torch.tensor(table, dtype=torch.float64), atol=5e-5)
    assert sigmoid_time_cost(10).sum().item() == pytest.approx(0.987, abs=5e-4)
    assert sigmoid_time_cost(4).sum().item() == pytest.approx(0.762, abs=5e-4)
    assert torch.allclose(sigmoid_time_cost(4, scale=3.0), 3 * sigmoid_time_cost(4))


def test_time_cost_is_read_by_level():
    """T = 5, m = 2 is asymmetric: DxMI's first step (drawing level 4) costs sigm(2) − sigm(1) =
    0.1497, its last (drawing level 0) sigm(−2) − sigm(−3) = 0.0718."""
    _, sampler = _policy({"name": "ddpm_cosine", "num_levels": 5}, value_target="sigmoid_time_cost")
    sig = torch.sigmoid
    assert sampler.time_costs[4].item() == pytest.approx((sig(torch.tensor(2.0)) - sig(torch.tensor(1.0))).item())
    assert sampler.time_costs[0].item() == pytest.approx((sig(torch.tensor(-2.0)) - sig(torch.tensor(-3.0))).item())
    _, linear = _policy(value_target="linear_time_cost", time_cost=0.05)
    assert torch.allclose(linear.time_costs, torch.full((3,), 0.05))


# -- gcd -----------------------------------------------------------------------------------------
def test_gcd_energy_loss_matches_a_hand_computation():
    schedule = SCHEDULES.build(LINEAR3)
    div = DIVERGENCES.build({"name": "gcd", "gamma": 0.5}, schedule=schedule)
    energy = lambda x, t: x[:, 0] + 10.0 * t  # noqa: E731  (level 0 must be the one read)
    pos = torch.tensor([[1.0, 0.0], [3.0, 5.0]])
    neg = torch.tensor([[-2.0, 1.0], [0.0, 0.0], [4.0, 4.0]])
    batch = div.training_batch(pos)
    assert torch.equal(batch.positives, pos) and batch.level.eq(0).all()
    out = div.energy_loss(batch, neg, energy)
    # mean E⁺ = 2, mean E⁻ = 2/3, mean E⁺² = 5, mean E⁻² = 20/3
    expected = 2.0 - 2.0 / 3.0 + 0.5 * (5.0 + 20.0 / 3.0)
    assert out.loss.item() == pytest.approx(expected)
    assert out.metrics["e_pos"].item() == pytest.approx(2.0)


# -- DxDP ----------------------------------------------------------------------------------------
def test_td_sweep_with_tau_zero_and_a_frozen_policy_learns_the_expected_final_energy():
    """V(x, k) → E[E(x_0) | x_k]: for E = ‖x‖² and the linear chain, a_k = a_{k−1} m_k² and
    b_k = b_{k−1} + a_{k−1} D σ²_{k−1} (D = 2)."""
    torch.manual_seed(0)
    schedule, sampler = _policy(tau=0.0)
    zero_output_layer(sampler.eps_net)
    m, sigma = _linear_chain(schedule, sampler)
    a, b = [1.0], [0.0]
    for k in range(1, 4):
        a.append(a[-1] * m[k] ** 2)
        b.append(b[-1] + a[-2] * 2 * sigma[k - 1] ** 2)
    value = QuadraticValue(3)
    opt = torch.optim.Adam(value.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    for it in range(1500):
        if it == 1000:
            opt.param_groups[0]["lr"] = 0.002
        batch = _batch(512)
        record = sampler.sample(batch, value, generator=g)
        for update in sampler.updates(batch, record, value, generator=g):
            assert update.group == "energy"  # the value function is the energy's network
            opt.zero_grad()
            update.loss().loss.backward()
            opt.step()
    assert value.a[0].item() == 1.0 and value.b[0].item() == 0.0  # E itself is never a TD target
    assert torch.allclose(value.a.detach().double(), torch.tensor(a, dtype=torch.float64), rtol=0.03)
    assert torch.allclose(value.b.detach().double(), torch.tensor(b, dtype=torch.float64), rtol=0.05, atol=0.01)


def test_td_target_holds_the_running_costs():
    """One sweep step by hand: target = V(x_0, 0) + τ₂ mean_d Δ²/(2 s_0²) − τ₁ log σ_0."""
    _, sampler = _policy(tau=0.2, tau_velocity=0.5, avr_decay=0.5)
    value = QuadraticValue(3)
    batch = _batch(8)
    record = sampler.sample(batch, value, generator=torch.Generator().manual_seed(1))
    states = record.saved["trajectory"]
    s2 = 0.5 * sampler.velocity_var.clone() + 0.5 * torch.stack(
        [(states[j] - states[j + 1]).pow(2).mean() for j in range(3)])
    first = next(sampler.updates(batch, record, value)).loss()
    assert torch.allclose(sampler.velocity_var, s2)
    x0, x1 = states[0], states[1]
    target = x0.pow(2).sum(1) + 0.5 * (x0 - x1).pow(2).mean(1) / (2 * s2[0]) - 0.2 * sampler.log_sigma()[0]
    assert first.loss.item() == pytest.approx((x1.pow(2).sum(1) - target).pow(2).mean().item(), rel=1e-5)


def test_avr_converges_to_the_mean_squared_step_per_dimension():
    """s_j² → E‖x_j − x_{j+1}‖²/D = (m_{j+1} − 1)² v_{j+1} + σ_j², v_T = 1, v_{k−1} = m_k² v_k + σ²_{k−1}."""
    schedule, sampler = _policy(avr_decay=0.9)
    zero_output_layer(sampler.eps_net)
    m, sigma = _linear_chain(schedule, sampler)
    v = {3: 1.0}
    for k in (3, 2, 1):
        v[k - 1] = m[k] ** 2 * v[k] + sigma[k - 1] ** 2
    expected = torch.tensor([(m[j + 1] - 1) ** 2 * v[j + 1] + sigma[j] ** 2 for j in range(3)])
    g, tail = torch.Generator().manual_seed(0), []
    for it in range(400):
        sampler.update_velocity_var(sampler.trajectory(512, generator=g))
        if it >= 100:
            tail.append(sampler.velocity_var.clone())
    assert torch.allclose(torch.stack(tail).mean(0), expected.float(), rtol=0.02)


def test_policy_loss_gradient_in_log_sigma_matches_finite_differences():
    torch.manual_seed(0)
    _, sampler = _policy(tau=0.1, tau_velocity=0.3)
    sampler.eps_net = TimeLinear()  # the mlp's level embedding is float32-only; this test runs in float64
    sampler.double()
    energy = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    value = lambda x, t: energy(x).squeeze(1) * (1 + 0.3 * t)  # noqa: E731  (a different V per level)
    g = torch.Generator().manual_seed(0)
    x_next = torch.randn(64, 2, generator=g, dtype=torch.float64)
    k = torch.arange(64) % 3 + 1
    noise = torch.randn(64, 2, generator=g, dtype=torch.float64)
    sampler.velocity_var.copy_(torch.tensor([0.01, 0.2, 0.5]))

    (grad,) = torch.autograd.grad(sampler.policy_loss(x_next, k, noise, value), sampler.log_sigma_rest)
    h, fd = 1e-6, []
    for i in range(sampler.log_sigma_rest.numel()):
        losses = []
        for sign in (1, -1):
            with torch.no_grad():
                sampler.log_sigma_rest[i] += sign * h
                losses.append(sampler.policy_loss(x_next, k, noise, value).item())
                sampler.log_sigma_rest[i] -= sign * h
        fd.append((losses[0] - losses[1]) / (2 * h))
    assert torch.allclose(grad, torch.tensor(fd, dtype=torch.float64), rtol=1e-6, atol=1e-9)
    assert "log_sigma_last" not in dict(sampler.named_parameters())  # the last σ is fixed


def test_entropy_gradient_alone_is_minus_tau_per_share_of_states():
    """With V ≡ 0 and τ₂ = 0 the loss is −τ mean log σ_j: ∂/∂log σ_j = −τ · (share of states at level j+1)."""
    _, sampler = _policy(tau=0.4, tau_velocity=0.0)
    k = torch.tensor([1, 2, 2, 3, 3, 3, 3, 3])
    x = torch.randn(8, 2)
    zero = lambda x, t: torch.zeros(x.shape[0])  # noqa: E731
    (grad,) = torch.autograd.grad(sampler.policy_loss(x, k, torch.randn(8, 2), zero), sampler.log_sigma_rest)
    assert torch.allclose(grad, torch.tensor([-0.4 * 2 / 8, -0.4 * 5 / 8]))


def test_pretrain_loss_is_ddpm_epsilon_mse():
    schedule, sampler = _policy()
    zero_output_layer(sampler.eps_net)
    x0 = torch.randn(32, 2)
    out = sampler.pretrain_loss(x0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    torch.randint(1, 4, (32,), generator=g)
    eps = torch.randn(32, 2, generator=g)
    assert out.loss.item() == pytest.approx(eps.pow(2).mean().item())  # ε_φ ≡ 0


def test_value_guidance_lowers_the_energy_of_samples():
    _, plain = _policy()
    _, guided = _policy(guidance=0.5)
    guided.load_state_dict(plain.state_dict())
    value = QuadraticValue(3)
    a = plain.generate(2000, value, generator=torch.Generator().manual_seed(0))
    b = guided.generate(2000, value, generator=torch.Generator().manual_seed(0))
    assert b.pow(2).sum(1).mean() < 0.8 * a.pow(2).sum(1).mean()


def test_bad_options_name_the_allowed_values():
    from ebmkit.registry import ComponentError

    with pytest.raises(ComponentError, match="running_costs.*sigmoid_time_cost.*linear_time_cost"):
        _policy(value_target="fixed")
    with pytest.raises(ComponentError, match="time_dependent.*time_independent"):
        _policy(value="shared")


# -- trainer core, recipe ------------------------------------------------------------------------
def _tiny(**changes):
    base = {"network.width": 16, "network.depth": 1, "sampler.network": SMALL_NET, "train.batch_size": 32,
            "train.steps": 3, "train.pretrain_steps": 5, "train.eval_every": 0, "eval.n_samples": 200,
            "train.max_negative_ratio": None}  # 5 pretraining steps leave the policy far from the data
    return Recipe.from_name("dxmi").override({**base, **changes})


def test_log_sigma_learns_at_its_own_rate_and_td_steps_use_the_energy_optimizer(tmp_path):
    trainer = Trainer(_tiny(), tmp_path / "run", progress=False)
    trainer._setup()
    weights, sigmas = trainer.optimizers["sampler"].param_groups
    energy_before = [p.detach().clone() for p in trainer.model.energy.parameters()]
    metrics = trainer.train_step()
    assert sigmas["params"] == [trainer.model.sampler.log_sigma_rest]
    assert weights["lr"] == pytest.approx(1e-4) and sigmas["lr"] == pytest.approx(1e-3)  # step 1 of the cosine: the full lr
    assert {f"td_{k}" for k in range(1, 6)} <= set(metrics)
    # one gcd step + five TD steps on the energy's Adam
    assert trainer.optimizers["energy"].state[next(iter(trainer.model.energy.parameters()))]["step"] == 6
    assert any(not torch.equal(a, b) for a, b in zip(energy_before, trainer.model.energy.parameters()))


def test_recipe_pretrains_then_trains_end_to_end(tmp_path):
    recipe = _tiny()
    model = recipe.fit(tmp_path / "run", progress=False)
    x = model.generate(500, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 2) and torch.isfinite(x).all()
    assert torch.isfinite(model.data_energy(x)).all()
    stats = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["step"] == 3 and math.isfinite(stats[-1]["sampler_loss"])
    # the pretraining phase moved the policy off its initialisation, and only once
    torch.manual_seed(recipe.train.seed)
    fresh = EnergyModel(recipe, (2,))
    assert not torch.equal(fresh.sampler.eps_net.inp.weight, model.sampler.eps_net.inp.weight)


def test_pretraining_needs_a_sampler_with_an_objective(tmp_path):
    from ebmkit.training.trainer import TrainingError

    recipe = Recipe.from_name("drl").override({"train.pretrain_steps": 3, "train.steps": 1})
    with pytest.raises(TrainingError, match="pretrain_steps.*langevin"):
        Trainer(recipe, tmp_path / "run", progress=False).fit()


def _cli(*args):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "ebmkit", *args], capture_output=True, text=True, env=env, timeout=300)


def test_ablations_are_one_set_away():
    r = _cli("train", "--recipe", "dxmi", "--data", "8gaussians", "--set", "sampler.tau=0", "--set",
             "train.pretrain_steps=0", "--set", "sampler.value_target=sigmoid_time_cost", "--set",
             "sampler.value=time_independent", "--set", "sampler.guidance=0.5", "--dry-run")
    assert r.returncode == 0, r.stderr
    recipe = json.loads(r.stdout)
    assert recipe["sampler"]["tau"] == 0 and recipe["train"]["pretrain_steps"] == 0
    assert recipe["sampler"]["value_target"] == "sigmoid_time_cost" and recipe["divergence"] == {"name": "gcd", "gamma": 1.0}
    bad = _cli("train", "--recipe", "dxmi", "--set", "sampler.value_target=nope", "--dry-run")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "running_costs" in bad.stderr and "sigmoid_time_cost" in bad.stderr


class TestDiffusionPolicySampler(SamplerContract):
    spec = {"name": "dp_policy", "network": SMALL_NET}
    base_recipe = "dxmi"
    small = {**SamplerContract.small, "train.pretrain_steps": 2, "train.eval_every": 0}


class TestGCD(DivergenceContract):
    spec = {"name": "gcd", "gamma": 1.0}
    base_recipe = "dxmi"
    small = {**DivergenceContract.small, "sampler.network": SMALL_NET, "train.pretrain_steps": 2,
             "train.eval_every": 0}


def test_8gaussians_is_the_dxmi_data():
    """specs/dxmi.md §5.2: centres at radius 4/1.414, per-axis std 0.5/1.414."""
    x = DATASETS.build("8gaussians").sample(20000, generator=torch.Generator().manual_seed(0))
    assert x.norm(dim=1).mean().item() == pytest.approx(4 / 1.414, rel=0.03)


def test_resume_after_pretraining_repeats_an_uninterrupted_run(tmp_path):
    """The step-0 checkpoint keeps the pretrained policy; AVR's s² and log σ's lr group resume too.
    (A constant lr: the first leg stops at 2 of 4 steps by changing train.steps, which a cosine
    schedule depends on.)"""
    constant = {"train.lr_schedule": "constant"}
    straight = _tiny(**{"train.steps": 4, **constant}).fit(tmp_path / "a", progress=False)
    _tiny(**{"train.steps": 2, "train.checkpoint_every": 2, **constant}).fit(tmp_path / "b", progress=False)
    resumed = Trainer(_tiny(**{"train.steps": 4, "train.checkpoint_every": 2, **constant}), tmp_path / "b",
                      resume=True, progress=False).fit()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


class ConstantEps(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x, t):
        return torch.full_like(x, self.value)


def test_clip_x0_clamps_the_denoised_estimate_inside_the_mean():
    """μ = q-posterior mean at x̂_0 = clamp((x_k − σ̄_k ε) / √ᾱ_k, −c, c), by hand from the coefficients."""
    schedule, sampler = _policy(clip_x0=1.0)
    _, free = _policy()
    sampler.eps_net = free.eps_net = ConstantEps(-3.0)  # x̂_0 far outside [−1, 1]
    x, k = torch.full((4, 2), 0.5), torch.full((4,), 3, dtype=torch.long)
    abar = float(schedule.alphas_cumprod[3])
    x0 = (0.5 + math.sqrt(1 - abar) * 3.0) / math.sqrt(abar)
    c1, c2 = float(schedule.posterior_coef_x0[2]), float(schedule.posterior_coef_xnext[2])
    assert torch.allclose(sampler.policy_mean(x, k), torch.full((4, 2), c1 * 1.0 + c2 * 0.5), atol=1e-5)
    assert torch.allclose(free.policy_mean(x, k), torch.full((4, 2), c1 * x0 + c2 * 0.5), atol=1e-4)
