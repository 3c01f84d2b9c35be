"""Data sets: seeded draws, the papers' scales, exact densities that integrate to one and match
the samples, and the user's own files with one clear message per problem."""

import math

import numpy as np
import pytest
import torch

import ebmkit  # noqa: F401  (registers built-ins)
from ebmkit.data import DATASETS, DataError, Dataset, data_spec_from_cli
from ebmkit.registry import ComponentError

TOY = ["8gaussians", "25gaussians", "checkerboard", "pinwheel", "swissroll", "2spirals", "rings", "moons"]
WITH_DENSITY = {"8gaussians", "25gaussians", "checkerboard", "pinwheel", "swissroll"}


def draw(name, n, seed=0):
    return DATASETS.build(name).sample(n, generator=torch.Generator().manual_seed(seed))


def grid(lo, hi, res):
    """Cell centres of a res × res grid on [lo, hi]² and the cell area."""
    h = (hi - lo) / res
    c = lo + h * (torch.arange(res, dtype=torch.float64) + 0.5)
    return torch.cartesian_prod(c, c), h * h


def integral(ds, lo, hi, res):
    pts, area = grid(lo, hi, res)
    return sum(ds.log_prob(p).exp().sum().item() for p in pts.split(200_000)) * area


# -- every toy set ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", TOY)
def test_toy_sets_are_seeded_float32_points_in_the_box(name):
    ds = DATASETS.build(name)
    assert isinstance(ds, Dataset) and ds.dim == 2 and ds.box == (-4.0, 4.0)
    a, b, c = draw(name, 3000, seed=1), draw(name, 3000, seed=1), draw(name, 3000, seed=2)
    assert a.shape == (3000, 2) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.isfinite(a).all()
    assert ((a.abs() <= 4).all(1)).float().mean() > 0.995
    assert ds.sample(0).shape == (0, 2)


@pytest.mark.parametrize("name", TOY)
def test_toy_sets_take_no_options_and_say_what_they_are(name):
    assert DATASETS.validate(name) == {"name": name}
    entry = DATASETS.get(name)
    assert entry.summary and "\n" not in (entry.obj.__doc__ or "").strip()
    with pytest.raises(ComponentError, match="scale"):
        DATASETS.build({"name": name, "scale": 2})


def test_sample_rejects_a_bad_count():
    with pytest.raises(ValueError, match="non-negative int"):
        DATASETS.build("moons").sample(-1)


@pytest.mark.parametrize("name", sorted(set(TOY) - WITH_DENSITY))
def test_sets_without_a_closed_form_say_so(name):
    ds = DATASETS.build(name)
    assert not ds.has_log_prob
    with pytest.raises(NotImplementedError, match="no closed-form density"):
        ds.log_prob(torch.zeros(3, 2))


# -- scales, from the definitions ---------------------------------------------------------------
def test_8gaussians_modes_and_spread():
    x = draw("8gaussians", 40_000).double()
    # centres (4 cos, 4 sin)(k·45°)/1.414: per-axis variance of the centres r²/2, plus σ²
    r, sigma = 4 / 1.414, 0.5 / 1.414
    assert torch.allclose(x.std(0), torch.full((2,), math.sqrt(r**2 / 2 + sigma**2), dtype=torch.float64), atol=0.02)
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = r * torch.stack([angles.cos(), angles.sin()], 1)
    k = torch.cdist(x, centres).argmin(1)
    assert torch.allclose(torch.bincount(k, minlength=8).double() / len(x), torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)
    resid = x - centres[k]
    assert abs(resid.std().item() - sigma) < 0.005


def test_25gaussians_sits_on_the_grid():
    x = draw("25gaussians", 25_000).double()
    spacing, sigma = 2 / 2.828, 0.1 / 2.828
    idx = torch.round(x / spacing)
    assert idx.abs().max() <= 2
    resid = x - idx * spacing
    assert abs(resid.std().item() - sigma) < 0.001
    cell = ((idx[:, 0] + 2) * 5 + idx[:, 1] + 2).long()
    frac = torch.bincount(cell, minlength=25) / len(x)
    assert (frac - 1 / 25).abs().max() < 0.006
    assert torch.allclose(x.std(0), torch.ones(2, dtype=torch.float64), atol=0.02)  # DDAEBM: ≈ 1


def test_other_toy_sets_have_their_reference_scale():
    # swiss roll: E[(t cos t, t sin t)] / 5 for t ~ U(1.5π, 4.5π); over that interval
    # ∫ t cos t = [t sin t + cos t] = 6π and ∫ t sin t = [−t cos t + sin t] = 2, divided by 3π
    x = draw("swissroll", 40_000).double()
    assert torch.allclose(x.mean(0), torch.tensor([2 / 5, 2 / (3 * math.pi) / 5], dtype=torch.float64), atol=0.03)
    # moons: x mean (0 + 1)/2 · 2 − 1 = 0; y mean (2/π + 1/2 − 2/π)/2 · 2 − 0.2 = 0.3
    x = draw("moons", 40_000).double()
    assert torch.allclose(x.mean(0), torch.tensor([0.0, 0.3], dtype=torch.float64), atol=0.02)
    # rings: radii 3 · (1, 0.75, 0.5, 0.25), noise 0.08, equal weights
    r = draw("rings", 40_000).double().norm(dim=1)
    radii = torch.tensor([3.0, 2.25, 1.5, 0.75], dtype=torch.float64)
    which = (r[:, None] - radii).abs().argmin(1)
    assert ((r - radii[which]).abs() < 0.32).float().mean() > 0.999
    assert (torch.bincount(which, minlength=4) / len(r) - 0.25).abs().max() < 0.01
    # pinwheel: ‖x‖ = 2‖(1 + 0.3 z₁, 0.1 z₂)‖, mean ≈ 2 (1 + 0.005 E[1/(1 + 0.3 z)]) ≈ 2.011
    r = draw("pinwheel", 40_000).double().norm(dim=1)
    assert abs(r.mean().item() - 2.011) < 0.01
    # 2spirals: symmetric about 0; the spiral arm reaches radius ≈ 3π/3
    x = draw("2spirals", 40_000).double()
    assert x.mean(0).abs().max() < 0.03
    assert 3.0 < x.norm(dim=1).max() < 3.8


# -- exact densities ------------------------------------------------------------------------
def test_log_prob_integrates_to_one():
    assert integral(DATASETS.build("8gaussians"), -4, 4, 800) == pytest.approx(1.0, abs=2e-3)  # ≈ 0.1% outside
    assert integral(DATASETS.build("25gaussians"), -2, 2, 1000) == pytest.approx(1.0, abs=1e-6)  # modes ≤ 1.42 + 16σ
    assert integral(DATASETS.build("checkerboard"), -4, 4, 400) == pytest.approx(1.0, abs=1e-9)
    assert integral(DATASETS.build("swissroll"), -4, 4, 120) == pytest.approx(1.0, abs=1e-4)
    assert integral(DATASETS.build("pinwheel"), -4, 4, 120) == pytest.approx(1.0, abs=1e-3)  # 0.014% beyond the box


def test_swissroll_density_is_the_noise_convolved_curve():
    """At a point on the curve p is about U(t) × the normal's mass across the curve; far off it, 0."""
    ds = DATASETS.build("swissroll")
    t = torch.tensor([2 * math.pi, 3.5 * math.pi])
    on_curve = torch.stack([t * t.cos(), t * t.sin()], 1) / 5
    # locally the curve is a line: ∫ N(5x; γ(s), I) ds ≈ 1/(√(2π) |γ'(t)|); U = 1/(3π); Jacobian 25
    want = 25 / (3 * math.pi) / (math.sqrt(2 * math.pi) * torch.sqrt(1 + t**2))
    assert ds.log_prob(on_curve).exp().double() == pytest.approx(want.tolist(), rel=0.03)
    assert ds.log_prob(torch.tensor([[0.0, 0.0]])).exp().item() < 1e-4


def test_pinwheel_density_on_an_arm_centre_line():
    """On arm 0 at f = (1, 0): a = 0.25 e, x = 2 R(−a)(1, 0); ∂φ/∂ψ = 1, so p = N(f)/(4·5)."""
    ds = DATASETS.build("pinwheel")
    a = 0.25 * math.e
    x = torch.tensor([[2 * math.cos(a), -2 * math.sin(a)]], dtype=torch.float64)
    want = 1 / (2 * math.pi * 0.3 * 0.1) / 20
    assert ds.log_prob(x).exp().item() == pytest.approx(want, rel=0.01)


def test_mixture_log_prob_matches_a_direct_sum_of_gaussians():
    ds = DATASETS.build("8gaussians")
    x = np.array([[0.0, 0.0], [2.83, 0.1], [-1.9, 2.1], [3.5, -3.9]])
    s = 0.5 / 1.414
    p = 0.0
    for k in range(8):
        c = np.array([4 * math.cos(k * math.pi / 4), 4 * math.sin(k * math.pi / 4)]) / 1.414
        p = p + np.exp(-((x - c) ** 2).sum(1) / (2 * s * s)) / (2 * math.pi * s * s) / 8
    got = ds.log_prob(torch.tensor(x)).numpy()
    assert np.allclose(got, np.log(p), rtol=1e-10, atol=1e-10)
    assert ds.log_prob(torch.zeros(5, 2)).dtype == torch.float32  # follows the input


def test_checkerboard_support_is_the_eight_dark_squares():
    ds = DATASETS.build("checkerboard")
    x = draw("checkerboard", 40_000)
    lp = ds.log_prob(x)
    assert torch.isfinite(lp).all() and torch.allclose(lp, torch.full_like(lp, -math.log(32)))
    # which of the 16 squares of side 2: dark ones (i + j even) each get 1/8, light ones none
    ij = torch.floor(x / 2).long().clamp(-2, 1) + 2
    frac = torch.bincount(ij[:, 0] * 4 + ij[:, 1], minlength=16).double() / len(x)
    dark = torch.tensor([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert (frac[~dark] == 0).all()
    assert (frac[dark] - 1 / 8).abs().max() < 0.008
    # a point in a light square, off the board, and the board's outer edge
    pts = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-3.0, -3.0], [-3.0, 3.0], [4.5, 0.5], [4.0, 4.0], [-4.0, -4.0]])
    assert ds.log_prob(pts).tolist() == pytest.approx([-math.log(32), -math.inf, -math.log(32), -math.inf,
                                                        -math.inf, -math.log(32), -math.log(32)])


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians", "pinwheel", "swissroll"])
def test_histogram_of_samples_matches_the_density(name):
    ds = DATASETS.build(name)
    lo, hi = (-1.6, 1.6) if name == "25gaussians" else (-4.0, 4.0)
    fine = 40 if ds.log_prob.__defaults__ is None else 15  # sub-cells per bin: quadratures are slower
    bins = 8  # 8 × 8 bins, each integrated on fine × fine sub-cells
    pts, area = grid(lo, hi, bins * fine)
    dens = ds.log_prob(pts).exp().reshape(bins * fine, bins * fine) * area
    expected = dens.reshape(bins, fine, bins, fine).sum((1, 3))
    x = draw(name, 40_000).double()
    ij = ((x - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1)
    observed = torch.bincount(ij[:, 0] * bins + ij[:, 1], minlength=bins * bins).reshape(bins, bins) / len(x)
    assert (observed - expected).abs().max() < 0.006  # binomial sd ≤ 0.0025 per bin at n = 40k


# -- the user's own points --------------------------------------------------------------------
def build_file(path):
    return DATASETS.build({"name": "file", "path": str(path)})


def test_npy_round_trip_and_resampling(tmp_path):
    arr = np.random.RandomState(0).randn(50, 3) * [1.0, 2.0, 3.0] + 10
    np.save(tmp_path / "pts.npy", arr)
    ds = build_file(tmp_path / "pts.npy")
    assert ds.dim == 3 and not ds.has_log_prob
    assert torch.equal(ds.points, torch.tensor(arr, dtype=torch.float32))
    s = ds.sample(200, generator=torch.Generator().manual_seed(3))
    assert s.shape == (200, 3) and s.dtype == torch.float32
    assert torch.equal(s, ds.sample(200, generator=torch.Generator().manual_seed(3)))
    rows = {tuple(r) for r in ds.points.tolist()}
    assert all(tuple(r) in rows for r in s.tolist())
    assert len({tuple(r) for r in s.tolist()}) > 40  # with replacement, most rows get drawn
    lo, hi = arr.min(), arr.max()
    assert ds.box == pytest.approx((lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)), rel=1e-6)


def test_integer_npy_is_read_as_float(tmp_path):
    np.save(tmp_path / "ints.npy", np.arange(12).reshape(6, 2))
    ds = build_file(tmp_path / "ints.npy")
    assert ds.points.dtype == torch.float32 and ds.points[5].tolist() == [10.0, 11.0]


@pytest.mark.parametrize("header", ["", "x,y\n", " x , y \n"])
def test_csv_with_and_without_a_header(tmp_path, header):
    (tmp_path / "pts.csv").write_text(header + "1.5,2\n-3,4e-1\n5,6\n")
    ds = build_file(tmp_path / "pts.csv")
    assert ds.dim == 2
    assert ds.points.tolist() == [[1.5, 2.0], [-3.0, pytest.approx(0.4)], [5.0, 6.0]]


def test_single_column_csv_is_one_dimensional(tmp_path):
    (tmp_path / "pts.csv").write_text("value\n1\n2\n3\n")
    assert build_file(tmp_path / "pts.csv").sample(4).shape == (4, 1)


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("absent.npy", None, "data file '{p}' not found"),
        ("pts.txt", "1,2\n3,4\n", "unsupported suffix '.txt'; allowed: .npy, .csv"),
        ("flat.npy", np.zeros(5), "2-D float array (N points × D dims), found shape (5,) and dtype float64"),
        ("cube.npy", np.zeros((2, 2, 2)), "found shape (2, 2, 2)"),
        ("text.npy", np.array([["a", "b"], ["c", "d"]]), "found shape (2, 2) and dtype <U1"),
        ("holes.npy", np.array([[1.0, np.nan], [2.0, 3.0], [np.inf, 1.0]]), "2 NaN/Inf values (first in data row 1)"),
        ("holes.csv", "x,y\n1,2\n3,nan\n", "1 NaN/Inf values (first in data row 2)"),
        ("one.npy", np.ones((1, 2)), "has 1 row(s); need at least 2 points"),
        ("one.csv", "x,y\n1,2\n", "has 1 row(s); need at least 2 points"),
        ("empty.csv", "", "has 0 row(s)"),
        ("ragged.csv", "x,y\n1,2\n\n3,4,5\n", "not comma-separated numbers: line 4: 3 values where earlier lines have 2"),
        ("words.csv", "1,2\n3,four\n", "not comma-separated numbers: line 2: 'four' is not a number"),
        ("fake.npy", "1,2\n3,4\n", "is not a .npy file"),
    ],
)
def test_file_errors_name_the_problem(tmp_path, filename, content, message):
    path = tmp_path / filename
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(DataError) as exc:
        build_file(path)
    assert message.format(p=path) in str(exc.value)
    assert str(path) in str(exc.value)


def test_file_needs_a_path():
    with pytest.raises(ComponentError, match="path"):
        DATASETS.build("file")


def test_data_spec_from_cli():
    assert data_spec_from_cli("8gaussians") == "8gaussians"
    assert data_spec_from_cli("pts.npy") == {"name": "file", "path": "pts.npy"}
    assert data_spec_from_cli("Pts.CSV") == {"name": "file", "path": "Pts.CSV"}
    assert data_spec_from_cli("runs/points") == {"name": "file", "path": "runs/points"}
    assert data_spec_from_cli("9gaussians") == "9gaussians"
    with pytest.raises(ComponentError, match="unknown dataset '9gaussians'; available: .*8gaussians"):
        DATASETS.build(data_spec_from_cli("9gaussians"))
