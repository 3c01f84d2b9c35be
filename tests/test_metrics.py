"""Metrics pinned to independent computations: closed forms, brute-force numpy, and the
published optimum of the energy AUC."""

import itertools
import math

import numpy as np
import pytest
import torch

import ebmkit  # noqa: F401
from ebmkit.data import DATASETS
from ebmkit.metrics import energy_auc, grid_log_likelihood, mmd, roc_auc, sliced_wasserstein, true_log_likelihood
from ebmkit.metrics.wasserstein import random_directions


def gen(seed):
    return torch.Generator().manual_seed(seed)


def half_circle(p):
    """p directions evenly spaced over half the circle: E_θ[(θ·v)²] = |v|²/2 exactly."""
    a = torch.arange(p, dtype=torch.float64) * math.pi / p
    return torch.stack([a.cos(), a.sin()], 1)


def sw_numpy(x, y, theta):
    """Brute force: for each direction sort both projections, mean squared gap; sqrt of the mean."""
    w2 = [np.mean((np.sort(x @ t) - np.sort(y @ t)) ** 2) for t in theta]
    return math.sqrt(np.mean(w2))


# -- sliced Wasserstein -----------------------------------------------------------------------
def test_sw_of_a_pure_shift_is_exact():
    # y = x + v: every sorted projection moves by θ·v, so SW² = mean_θ (θ·v)² with no sampling error
    x = torch.randn(500, 2, generator=gen(0), dtype=torch.float64)
    v = torch.tensor([3.0, -1.0], dtype=torch.float64)
    theta = random_directions(64, 2, gen(1))
    assert sliced_wasserstein(x, x + v, projections=theta) ** 2 == pytest.approx(((theta @ v) ** 2).mean().item(), rel=1e-12)
    assert sliced_wasserstein(x, x + v, projections=half_circle(90)) ** 2 == pytest.approx(10 / 2, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 5])
def test_sw_between_shifted_gaussians_is_the_projected_shift(dim):
    # independent draws of N(0, I) and N(v, I): per direction W₂² → (θ·v)², plus a sampling floor
    # of O(1/n); with evenly spaced directions on the circle the mean is exactly |v|²/2
    n, v = 20_000, torch.zeros(dim, dtype=torch.float64)
    v[0] = 3.0
    x = torch.randn(n, dim, generator=gen(2))
    y = torch.randn(n, dim, generator=gen(3)) + v
    theta = half_circle(180) if dim == 2 else random_directions(300, dim, gen(4))
    sw = sliced_wasserstein(x, y, projections=theta)
    assert sw == pytest.approx(math.sqrt(((theta @ v) ** 2).mean().item()), rel=0.01)
    if dim == 2:
        assert sw == pytest.approx(3.0 / math.sqrt(2), rel=0.01)


def test_random_directions_are_uniform_on_the_sphere():
    # so that E_θ (θ·v)² = |v|²/D: second and fourth moments of the uniform law on S^{D−1}
    d = 5
    theta = random_directions(200_000, d, gen(20))
    assert torch.allclose(theta.norm(dim=1), torch.ones(len(theta), dtype=torch.float64))
    assert torch.allclose(theta.T @ theta / len(theta), torch.eye(d, dtype=torch.float64) / d, atol=0.004)
    assert (theta**4).mean(0).tolist() == pytest.approx([3 / (d * (d + 2))] * d, abs=0.002)


def test_sw_is_zero_on_itself_symmetric_seeded_and_chunk_free():
    x = DATASETS.build("8gaussians").sample(700, gen(5))
    y = DATASETS.build("checkerboard").sample(700, gen(6))
    assert sliced_wasserstein(x, x, 200, gen(7)) == 0.0
    assert sliced_wasserstein(x, y, 200, gen(7)) == pytest.approx(sliced_wasserstein(y, x, 200, gen(7)), rel=1e-12)
    assert sliced_wasserstein(x, y, 200, gen(7)) == sliced_wasserstein(x, y, 200, gen(7))
    assert sliced_wasserstein(x, y, 200, gen(7)) != sliced_wasserstein(x, y, 200, gen(8))
    assert sliced_wasserstein(x, y, 200, gen(7), chunk_size=1) == pytest.approx(
        sliced_wasserstein(x, y, 200, gen(7)), rel=1e-12)


def test_sw_matches_numpy_brute_force_with_the_same_directions():
    rng = np.random.RandomState(0)
    x, y = rng.randn(50, 3), rng.randn(50, 3) * 2 + 1
    theta = random_directions(37, 3, gen(9))
    got = sliced_wasserstein(torch.tensor(x, dtype=torch.float32), torch.tensor(y), projections=theta)
    assert got == pytest.approx(sw_numpy(x.astype(np.float32).astype(np.float64), y, theta.numpy()), rel=1e-10)


def test_sw_with_unequal_sizes_is_the_exact_quantile_coupling():
    # uniform weights 1/n and 1/m equal n·m points with x repeated m times and y repeated n times,
    # where the equal-size sorted formula is exact
    rng = np.random.RandomState(1)
    x, y = rng.randn(7, 2), rng.randn(5, 2) + [1.0, 0.0]
    theta = random_directions(25, 2, gen(10))
    expected = sw_numpy(np.repeat(x, 5, 0), np.repeat(y, 7, 0), theta.numpy())
    assert sliced_wasserstein(torch.tensor(x), torch.tensor(y), projections=theta) == pytest.approx(expected, rel=1e-10)
    assert sliced_wasserstein(torch.tensor(y), torch.tensor(x), projections=theta) == pytest.approx(expected, rel=1e-10)


def test_sw_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match=r"\(n, D\) and \(m, D\)"):
        sliced_wasserstein(torch.zeros(4, 2), torch.zeros(4, 3))


# -- MMD --------------------------------------------------------------------------------------
def mmd_numpy(x, y, hs):
    def k(a, b):
        return sum(math.exp(-np.sum((a - b) ** 2) / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_matches_a_double_loop():
    rng = np.random.RandomState(2)
    x, y = rng.randn(6, 2), rng.randn(5, 2) * 1.5 + 0.5
    assert mmd(torch.tensor(x), torch.tensor(y), bandwidths=[0.3, 1.0]) == pytest.approx(mmd_numpy(x, y, [0.3, 1.0]), rel=1e-10)
    pooled = np.concatenate([x, y])
    med = np.median([np.linalg.norm(a - b) for a, b in itertools.combinations(pooled, 2)])
    assert mmd(torch.tensor(x), torch.tensor(y)) == pytest.approx(mmd_numpy(x, y, [med / 2, med, 2 * med]), rel=1e-10)


def test_mmd_is_near_zero_for_one_distribution_and_not_for_two():
    ds = DATASETS.build("8gaussians")
    a, b = ds.sample(3000, gen(11)), ds.sample(3000, gen(12))
    same = mmd(a, b)
    assert abs(same) < 2e-3
    assert mmd(a, torch.randn(3000, 2, generator=gen(13))) > 100 * max(abs(same), 1e-4)


def test_mmd_chunks_give_the_same_value(monkeypatch):
    import ebmkit.metrics.discrepancy as mmd_module

    x, y = torch.randn(300, 2, generator=gen(14)), torch.randn(200, 2, generator=gen(15)) + 0.3
    whole = mmd(x, y)
    monkeypatch.setattr(mmd_module, "CHUNK_ELEMENTS", 7 * 300)
    assert mmd(x, y) == pytest.approx(whole, rel=1e-10)


# -- AUC --------------------------------------------------------------------------------------
def test_roc_auc_matches_a_pairwise_count_with_ties():
    rng = np.random.RandomState(3)
    pos, neg = rng.randint(0, 10, 300) + 1, rng.randint(0, 10, 200)  # many ties
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(torch.tensor(pos), torch.tensor(neg)) == pytest.approx(wins / (300 * 200), abs=1e-12)
    assert roc_auc(torch.ones(5), torch.ones(7)) == 0.5
    assert roc_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert math.isnan(roc_auc(torch.tensor([0.0, float("nan")]), torch.tensor([1.0])))


def test_energy_auc_of_the_true_8gaussians_density_is_the_published_optimum():
    ds = DATASETS.build("8gaussians")
    calls = []

    def energy(x):
        calls.append(len(x))
        assert not torch.is_grad_enabled()
        return -ds.log_prob(x)

    auc = energy_auc(energy, ds.sample(10_000, gen(16)), ds.box, generator=gen(17))
    assert auc == pytest.approx(0.9015, abs=0.01)  # dxmi.md §6.1, uniform on [−4, 4]²
    assert max(calls) <= 4096 and sum(calls) == 20_000
    assert energy_auc(lambda x: torch.zeros(len(x)), ds.sample(100, gen(16)), ds.box, gen(17)) == 0.5


# -- exact 2D log-likelihood ------------------------------------------------------------------
def test_grid_log_likelihood_of_the_true_density_is_the_true_log_likelihood():
    ds = DATASETS.build("8gaussians")
    x = ds.sample(5000, gen(18))
    grid = grid_log_likelihood(ds.log_prob, x, ds.box, resolution=512)
    assert grid == pytest.approx(true_log_likelihood(ds, x), abs=0.01)
    # any additive constant in the log-density is normalised away
    assert grid_log_likelihood(lambda z: ds.log_prob(z) + 7.0, x, ds.box, resolution=512) == pytest.approx(grid, abs=1e-4)


def test_grid_log_likelihood_of_a_standard_normal_is_analytic():
    x = torch.randn(4000, 2, generator=gen(19), dtype=torch.float64)
    analytic = (-0.5 * (x**2).sum(1) - math.log(2 * math.pi)).mean().item()
    got = grid_log_likelihood(lambda z: -0.5 * (z**2).sum(1), x, (-9.0, 9.0), resolution=256)
    assert got == pytest.approx(analytic, abs=1e-4)


def test_grid_log_likelihood_clamps_outside_points_and_needs_2d():
    def f(z):
        return -z[:, 0]

    inside = grid_log_likelihood(f, torch.tensor([[4.0, 1.0]]), (-4.0, 4.0), resolution=64)
    assert grid_log_likelihood(f, torch.tensor([[9.0, 1.0]]), (-4.0, 4.0), resolution=64) == pytest.approx(inside)
    with pytest.raises(ValueError, match="2D grid; x must be \\(n, 2\\), got \\(10, 3\\)"):
        grid_log_likelihood(f, torch.zeros(10, 3), (-4.0, 4.0))


def test_true_log_likelihood_needs_a_known_density():
    x = torch.zeros(3, 2)
    assert true_log_likelihood(DATASETS.build("checkerboard"), x + 1) == pytest.approx(-math.log(32))
    with pytest.raises(NotImplementedError, match="no closed-form density"):
        true_log_likelihood(DATASETS.build("moons"), x)
