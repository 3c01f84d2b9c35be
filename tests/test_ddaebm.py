"""DDAEBM: the adversarial sampler, the Jeffrey / KL / reverse-KL divergences, the residual-norm
energy and the recipe, each pinned against a computation done here by hand."""

import math

import pytest
import torch
from torch import nn

from ebmkit import Recipe, RecipeError
from ebmkit.divergences.adversarial import gaussian_nll, kl_to_standard_normal
from ebmkit.model import EnergyModel
from ebmkit.registry import DIVERGENCES, ENERGIES, NETWORKS, SAMPLERS, SCHEDULES, ComponentError
from ebmkit.samplers import energy_denoise
from ebmkit.types import TrainingBatch

TOY_VP = {"name": "vp", "num_levels": 4, "beta_min": 0.01, "beta_max": 0.1}


class Quadratic(nn.Module):
    """E(x, t) = a_t ‖x − m‖² / 2: a Gaussian energy per level."""

    def __init__(self, a=(2.0, 3.0, 4.0, 5.0), m=0.5):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.m = m

    def forward(self, x, t):
        return 0.5 * self.a[t] * (x - self.m).pow(2).sum(1)


class ConstantGenerator(nn.Module):
    """G(x_{t+1}, z, t) = b: a generator whose optimum is easy by hand (it ignores its inputs)."""

    def __init__(self, dim):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(dim))

    def forward(self, x_next, t, z):
        return self.b.expand(x_next.shape[0], -1)


class ConstantEncoder(nn.Module):
    """q_φ(z | ·) = N(μ, e^{log_var}) with free μ, log_var."""

    def __init__(self, d_z):
        super().__init__()
        self.h = nn.Parameter(torch.tensor([0.7] * d_z + [-0.5] * d_z))

    def forward(self, h, t):
        return self.h.expand(h.shape[0], -1)


def _parts(divergence="jeffrey", **options):
    schedule = SCHEDULES.build(TOY_VP)
    sampler = SAMPLERS.build({"name": "adversarial", "latent_dim": 2}, schedule=schedule, shape=(2,))
    div = DIVERGENCES.build({"name": divergence, **options}, schedule=schedule)
    return schedule, sampler, div


def _batch(schedule, div, n=256, level=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, generator=g) * 0.5 + torch.tensor([1.0, -1.0])
    batch = div.training_batch(x0, generator=g)
    if level is not None:
        batch.level = torch.full((n,), level)
        batch.positives, batch.condition = schedule.q_pair(x0, batch.level, generator=g)
    return batch


# -- the Gaussian pieces ---------------------------------------------------------------------
def test_gaussian_terms_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    x, mean, log_var = (torch.randn(5, 3, generator=g) for _ in range(3))
    want = -torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(x).sum(1)
    assert torch.allclose(gaussian_nll(x, mean, log_var.exp()), want, atol=1e-5)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    assert torch.allclose(kl_to_standard_normal(mean, log_var), torch.distributions.kl_divergence(q, p).sum(1), atol=1e-5)


def test_log_kernel_is_one_forward_step():
    schedule, _, div = _parts()
    x_t, x_next, t = torch.tensor([[0.3, -0.2]]), torch.tensor([[0.1, 0.4]]), torch.tensor([2])
    a, b = math.sqrt(float(schedule.alphas[3])), float(schedule.betas[3])
    want = -((x_next - a * x_t) ** 2).sum() / (2 * b) - math.log(2 * math.pi * b)
    assert div.log_kernel(x_t, x_next, t).item() == pytest.approx(want.item(), rel=1e-5)


# -- the sampler -----------------------------------------------------------------------------
def test_posterior_draw_is_the_posterior_and_noise_free_at_level_0():
    schedule, sampler, _ = _parts()
    n = 200_000
    x_next = torch.full((n, 2), 0.4)
    x0_hat = torch.full((n, 2), -1.0)
    g = torch.Generator().manual_seed(0)
    for level in (0, 2):
        t = torch.full((n,), level)
        draw = sampler.posterior_draw(x_next, x0_hat, t, generator=g)
        c1, c2 = float(schedule.posterior_coef_x0[level]), float(schedule.posterior_coef_xnext[level])
        var = float(schedule.posterior_variance[level])
        assert draw.mean().item() == pytest.approx(c1 * -1.0 + c2 * 0.4, abs=4 * math.sqrt(var / n) + 1e-6)
        if level == 0:
            assert draw.std().item() == 0.0  # no noise at k = 0 (DDAEBM's code, training and sampling)
        else:
            assert draw.var().item() == pytest.approx(var, rel=0.01)


def test_posterior_variance_clip_for_images():
    schedule = SCHEDULES.build("vp")
    sampler = SAMPLERS.build({"name": "adversarial", "posterior_min_variance": 1e-4}, schedule=schedule, shape=(2,))
    assert sampler.draw_std[0].item() ** 2 == pytest.approx(max(float(schedule.posterior_variance[0]), 1e-4), rel=1e-5)
    assert sampler.draw_std[1].item() ** 2 == pytest.approx(float(schedule.posterior_variance[1]), rel=1e-5)


def test_generation_runs_the_reverse_chain_through_the_generator():
    schedule, sampler, _ = _parts()
    sampler.G = ConstantGenerator(2)
    with torch.no_grad():
        sampler.G.b.copy_(torch.tensor([1.0, -2.0]))
    x = sampler.generate(50_000, energy=None, generator=torch.Generator().manual_seed(0))
    # every step's mean pulls toward b; the final step adds no noise
    mean, var = torch.zeros(2), torch.ones(2)
    for k in reversed(range(4)):
        c1, c2 = float(schedule.posterior_coef_x0[k]), float(schedule.posterior_coef_xnext[k])
        mean = c1 * torch.tensor([1.0, -2.0]) + c2 * mean
        var = c2**2 * var + (float(schedule.posterior_variance[k]) if k > 0 else 0.0)
    assert torch.allclose(x.mean(0), mean, atol=0.01)
    assert torch.allclose(x.var(0), var, rtol=0.03)


def test_zero_latent_ablation():
    schedule = SCHEDULES.build(TOY_VP)
    sampler = SAMPLERS.build({"name": "adversarial", "latent": "zero"}, schedule=schedule, shape=(2,))
    assert torch.count_nonzero(sampler.latent_sample(7, torch.zeros(1))) == 0


# -- the energy step -------------------------------------------------------------------------
def test_energy_step_value_and_r1_penalty_by_hand():
    schedule, _, div = _parts(lambda_fake=0.1, r1_gamma=0.02)
    energy = Quadratic()
    batch = _batch(schedule, div, n=64)
    negatives = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    out = div.energy_loss(batch, negatives, energy)
    t, x, xn = batch.level, batch.positives, batch.condition
    a = energy.a.detach()[t][:, None]
    sa, beta = schedule.sqrt_alphas[t + 1].float()[:, None], schedule.betas[t + 1].float()[:, None]
    grad_log_cond = -a * (x - 0.5) + sa * (xn - sa * x) / beta  # ∇_{x_t}[−E(x_t) + log q(x_{t+1} | x_t)]
    r1 = 0.5 * 0.02 * grad_log_cond.pow(2).sum(1).mean()
    e_pos = 0.5 * a[:, 0] * (x - 0.5).pow(2).sum(1)
    e_neg = 0.5 * a[:, 0] * (negatives - 0.5).pow(2).sum(1)
    want = (e_pos - 0.1 * e_neg).mean() + r1
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert out.metrics["r1"].item() == pytest.approx(r1.item(), rel=1e-5)
    # the penalty backpropagates into θ (create_graph): d r1 / d a_t by hand
    out.loss.backward()
    d_r1 = 0.02 * (grad_log_cond * -(x - 0.5)).sum(1)  # γ/2 · 2 g · ∂g/∂a
    d_main = 0.5 * (x - 0.5).pow(2).sum(1) - 0.1 * 0.5 * (negatives - 0.5).pow(2).sum(1)
    want_grad = torch.zeros(4).index_add_(0, t, (d_main + d_r1) / 64)
    assert torch.allclose(energy.a.grad, want_grad, atol=1e-5)


def test_energy_step_lowers_the_energy_of_data():
    schedule, _, div = _parts(r1_gamma=0.0)
    energy = Quadratic()
    batch = _batch(schedule, div)
    out = div.energy_loss(batch, batch.positives + 3.0, energy)
    out.loss.backward()
    # data is nearer m than the negatives, so a larger curvature fits better: d loss / d a < 0
    assert (energy.a.grad < 0).all()


def test_energy_step_never_trains_the_generator():
    schedule, sampler, div = _parts()
    batch = _batch(schedule, div, n=32)
    negatives = sampler.sample(batch, None, generator=torch.Generator().manual_seed(0)).negatives
    div.energy_loss(batch, negatives, Quadratic()).loss.backward()
    assert all(p.grad is None for p in sampler.parameters())


# -- the generator step: the optimum of each bound ---------------------------------------------
def _fit(div, sampler, energy, batch, steps=600, lr=0.05):
    opt = torch.optim.Adam(sampler.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        record = sampler.sample(batch, energy, generator=g)
        loss = div.sampler_loss(batch, record, energy, sampler, generator=g).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_mode_seeking_generator_finds_the_mode_of_the_conditional_ebm():
    """At level 0 a constant generator gives x' = c1 b + c2 x_1; minimising E(x') − log q(x_1 | x')
    puts x' at the mode of p_θ(x_0 | x_1) ∝ exp(−a‖x − m‖²/2) N(x_1; √α_1 x, β_1)."""
    schedule, sampler, div = _parts("kl", entropy_weight=0.0)
    sampler.G = ConstantGenerator(2)
    energy = Quadratic()
    for p in energy.parameters():
        p.requires_grad_(False)
    x1 = torch.tensor([0.3, -0.6])
    batch = TrainingBatch(positives=torch.zeros(8, 2), condition=x1.expand(8, 2).clone(),
                          level=torch.zeros(8, dtype=torch.long), data=torch.zeros(8, 2))
    _fit(div, sampler, energy, batch, steps=1500, lr=0.02)
    a, m = 2.0, 0.5
    sa, beta = math.sqrt(float(schedule.alphas[1])), float(schedule.betas[1])
    mode = (a * m + sa * x1 / beta) / (a + sa**2 / beta)
    c1, c2 = float(schedule.posterior_coef_x0[0]), float(schedule.posterior_coef_xnext[0])
    x_fake = c1 * sampler.G.b.detach() + c2 * x1
    assert torch.allclose(x_fake, mode, atol=2e-3)


def test_reverse_kl_fits_the_real_pairs_and_the_prior():
    """With a constant generator and encoder, the ELBO's optimum is b = E[(x_t − c2 x_{t+1}) / c1]
    (the reconstruction) and q_φ = N(0, I) (the KL to the prior)."""
    schedule, sampler, div = _parts("reverse_kl")
    sampler.G, sampler.encoder = ConstantGenerator(2), ConstantEncoder(2)
    batch = _batch(schedule, div, n=512, level=1)
    _fit(div, sampler, None, batch, steps=800, lr=0.05)
    c1, c2 = float(schedule.posterior_coef_x0[1]), float(schedule.posterior_coef_xnext[1])
    want_b = ((batch.positives - c2 * batch.condition) / c1).mean(0)
    assert torch.allclose(sampler.G.b.detach(), want_b, atol=0.02)
    assert torch.allclose(sampler.encoder.h.detach(), torch.zeros(4), atol=0.02)


def test_jeffrey_is_the_sum_of_its_two_bounds_term_by_term():
    schedule, sampler, jeffrey = _parts("jeffrey", entropy_weight=0.3)
    kl = DIVERGENCES.build({"name": "kl", "entropy_weight": 0.3}, schedule=schedule)
    rkl = DIVERGENCES.build("reverse_kl", schedule=schedule)
    energy = Quadratic()
    batch = _batch(schedule, jeffrey, n=64)
    outs = []
    for div in (jeffrey, kl, rkl):
        record = sampler.sample(batch, energy, generator=torch.Generator().manual_seed(3))
        outs.append(div.sampler_loss(batch, record, energy, sampler, generator=torch.Generator().manual_seed(4)))
    j, f, r = outs
    assert j.loss.item() == pytest.approx(f.loss.item() + r.loss.item(), rel=1e-5)
    # each term, by hand, on the same draws
    record = sampler.sample(batch, energy, generator=torch.Generator().manual_seed(3))
    negatives, z = record.negatives, record.saved["latent"]
    t, xn = batch.level, batch.condition
    adv = (energy(negatives, t) - jeffrey.log_kernel(negatives, xn, t)).mean()
    mu, log_var = sampler.encode(negatives, xn, t)
    latent_nll = (0.5 * ((z - mu) ** 2 / (log_var.exp() + 1e-6) + (log_var.exp() + 1e-6).log() + math.log(2 * math.pi))).sum(1).mean()
    assert f.metrics["g_adv"].item() == pytest.approx(adv.item(), rel=1e-5)
    assert f.metrics["g_latent_nll"].item() == pytest.approx(latent_nll.item(), rel=1e-5)
    assert f.loss.item() == pytest.approx((adv + 0.3 * latent_nll).item(), rel=1e-5)
    assert r.loss.item() == pytest.approx((r.metrics["g_recon"] + r.metrics["g_kl"]).item(), rel=1e-6)


def test_the_latent_travels_in_the_record_and_nothing_is_parked_on_the_sampler():
    schedule, sampler, div = _parts()
    batch = _batch(schedule, div, n=8)
    record = sampler.sample(batch, Quadratic(), generator=torch.Generator().manual_seed(0))
    z = torch.randn(8, sampler.config.latent_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(record.saved["latent"], z)  # the generator's first draw
    assert {k for k, v in vars(sampler).items() if isinstance(v, torch.Tensor)} == set()
    first = div.sampler_loss(batch, record, Quadratic(), sampler, generator=torch.Generator().manual_seed(1)).loss
    again = div.sampler_loss(batch, record, Quadratic(), sampler, generator=torch.Generator().manual_seed(1)).loss
    assert torch.equal(first, again)  # a record can be read twice: it is the step's, not a use-once stash


def test_elbo_variance_floor():
    schedule = SCHEDULES.build("vp")
    img = DIVERGENCES.build({"name": "jeffrey", "elbo_min_variance": "level_1"}, schedule=schedule)
    assert img.elbo_variance[0].item() == pytest.approx(0.4409, abs=1e-4)  # σ̂²_0 := σ̃²_1 (spec §2.5)
    assert img.elbo_variance[1:].tolist() == pytest.approx(schedule.posterior_variance[1:].tolist(), rel=1e-6)
    toy = DIVERGENCES.build("jeffrey", schedule=SCHEDULES.build(TOY_VP))
    assert toy.elbo_variance.tolist() == pytest.approx([0.01, 0.01, 0.01, 0.0132], abs=1e-4)


def test_importance_weight_on_the_lsun_schedule():
    schedule = SCHEDULES.build({"name": "vp", "spacing": "drl"})
    div = DIVERGENCES.build({"name": "jeffrey", "importance_weight": (0.6, 0.2)}, schedule=schedule)
    assert div.level_weights.tolist() == pytest.approx([0.0349, 0.1047, 0.1990, 0.6000], abs=1e-4)
    assert DIVERGENCES.build("jeffrey", schedule=schedule).level_weights.tolist() == [1.0] * 4
    with pytest.raises(ComponentError, match="needs a schedule with diffusion times"):
        DIVERGENCES.build({"name": "jeffrey", "importance_weight": (0.6, 0.2)}, schedule=SCHEDULES.build("drl"))


# -- energies, networks, denoising ---------------------------------------------------------------
def test_residual_norm_energy_starts_as_the_standard_normal():
    schedule = SCHEDULES.build(TOY_VP)
    net = NETWORKS.build("mlp", dim=3, num_levels=4, out_dim=3)
    energy = ENERGIES.build("residual_norm", network=net, schedule=schedule)
    x, t = torch.randn(10, 3), torch.randint(0, 4, (10,))
    assert torch.allclose(energy(x, t), 0.5 * x.pow(2).sum(1))
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    assert torch.allclose(energy(x, t), 0.5 * (x - torch.tensor([1.0, 0.0, -1.0])).pow(2).sum(1), atol=1e-6)


def test_scalar_energy_base_measure_adds_half_c_squared_norm():
    schedule = SCHEDULES.build(TOY_VP)
    net = NETWORKS.build("mlp", dim=2, num_levels=4)
    plain = ENERGIES.build("scalar", network=net, schedule=schedule)
    based = ENERGIES.build({"name": "scalar", "base_precision": 0.25}, network=net, schedule=schedule)
    x, t = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-1.0, 2.0]]), torch.tensor([0, 1, 3])
    assert torch.allclose(based(x, t) - plain(x, t), torch.tensor([3.125, 0.0, 0.625]))  # ½·0.25·(25, 0, 5)
    assert Recipe.from_name("ddaebm_paper").energy["base_precision"] == 0.0  # the paper's energy is the network
    with pytest.raises(ComponentError, match="base_precision"):
        ENERGIES.build({"name": "scalar", "base_precision": -1.0}, network=net, schedule=schedule)


def test_model_builds_a_data_shaped_network_for_the_residual_norm_energy():
    recipe = Recipe.from_name("ddaebm").override({"energy": "residual_norm"})
    model = EnergyModel(recipe, (2,))
    assert model.energy.network.out_dim == 2
    assert model.data_energy(torch.zeros(4, 2)).tolist() == [0.0] * 4


def test_embed_mlp_batch_norm_uses_batch_statistics_always():
    net = NETWORKS.build({"name": "embed_mlp", "batch_norm": True}, dim=4, num_levels=4, out_dim=2)
    assert not list(net.buffers())  # nothing for an EMA or a checkpoint to go stale on
    x, t = torch.randn(32, 4), torch.randint(0, 4, (32,))
    net.eval()
    out_eval = net(x, t)
    net.train()
    assert torch.allclose(out_eval, net(x, t))
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in layers] == [16, 32, 16, 32, 300, 300, 2]


def test_denoising_step_on_the_level_0_energy():
    """DDAEBM's level-0 energy lives on x_0 itself: x ← (x − σ̄_0² ∇E(x, 0)) / √ᾱ_0."""
    recipe = Recipe.from_name("ddaebm").override({"sampler.denoise": True, "sampler.denoise_scale": 3.0})
    model = EnergyModel(recipe, (2,))
    s = model.schedule
    model.energy = Quadratic()
    x = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    grad = 2.0 * (x - 0.5)  # a_0 = 2
    want = (x - 3.0 * float(1 - s.alphas_cumprod[0]) * grad) / float(s.sqrt_alphas_cumprod[0])
    assert torch.allclose(energy_denoise(x, model.data_energy, s, 3.0), want, atol=1e-6)
    assert torch.allclose(model.sampler.finish(x, model.energy), want, atol=1e-6)


# -- assembly ---------------------------------------------------------------------------------
def test_adversarial_sampler_needs_a_generator_objective():
    with pytest.raises(RecipeError, match="sampler 'adversarial' needs a divergence that provides "
                                          "'generator_objective'.*Divergences that do at their defaults: jeffrey, kl, reverse_kl"):
        Recipe.from_name("ddaebm").override({"divergence": "recovery_likelihood"})


@pytest.mark.parametrize("name", ["kl", "reverse_kl"])
def test_ablation_is_one_set_away(name, tmp_path):
    from ebmkit.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["train", "--recipe", "ddaebm", "--steps", "3", "--set", f"divergence.name={name}",
                                      "--out", str(tmp_path / name), "--no-progress"])
    assert result.exit_code == 0, result.output
    import json

    config = json.loads((tmp_path / name / "config.json").read_text())
    assert config["recipe"]["divergence"]["name"] == name
    assert config["recipe"]["divergence"]["r1_gamma"] == 0.02  # the other options carry over


def test_fast_preset_is_the_paper_preset_with_documented_changes():
    from ebmkit.recipes.ddaebm import FAST_CHANGES

    paper, fast = Recipe.from_name("ddaebm_paper"), Recipe.from_name("ddaebm")
    assert fast.name == "ddaebm" and paper.name == "ddaebm_paper"
    assert all(reason for _, reason in FAST_CHANGES.values())
    want = paper.override({k: v for k, (v, _) in FAST_CHANGES.items()}).model_dump()
    assert fast.model_dump() == {**want, "name": "ddaebm"}
    assert (paper.train.steps, paper.train.lr, paper.train.batch_size) == (180_000, 1e-4, 200)  # App. B


def test_generator_step_reads_the_energy_but_never_trains_it():
    from ebmkit.training.trainer import frozen

    schedule, sampler, div = _parts()
    energy = Quadratic()
    batch = _batch(schedule, div, n=32)
    record = sampler.sample(batch, energy)
    with frozen(energy):
        div.sampler_loss(batch, record, energy, sampler).loss.backward()
    assert energy.a.grad is None and energy.a.requires_grad  # restored after the block
    assert all(p.grad is not None for p in sampler.G.parameters())


def test_ema_copies_integer_buffers_and_averages_the_rest():
    from torch.optim.swa_utils import AveragedModel

    from ebmkit.training.trainer import ema_multi_avg_fn

    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = AveragedModel(net, multi_avg_fn=ema_multi_avg_fn(0.5, warmup=False), use_buffers=True)
    net(torch.randn(8, 2))
    with torch.no_grad():
        net[0].bias.fill_(1.0)
    before = ema.module[0].bias.clone()
    ema.update_parameters(net)  # first call copies
    net(torch.randn(8, 2))
    with torch.no_grad():
        net[0].bias.fill_(3.0)
    ema.update_parameters(net)
    assert torch.allclose(ema.module[0].bias, torch.full((3,), 2.0))  # ½·1 + ½·3
    assert ema.module[1].num_batches_tracked.item() == 2 and not torch.equal(before, ema.module[0].bias)
