"""Noise schedules: pinned against the spec tables and against independent computations.

Every expected value here comes from outside the library's own code path: the numbers printed in
specs/drl.md §2 and §3, specs/cdrl.md §2 and §3, specs/ddaebm.md §2.5, numpy re-implementations
of each paper's recipe written from the specs, Bayes' rule evaluated on a grid, or Monte Carlo
with seeded generators and 5-sigma tolerances derived from the sample size.
"""

import math
from decimal import Decimal

import numpy as np
import pytest
import torch

from ebmkit.registry import SCHEDULES, ComponentError

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def printed(values):
    """Spec numbers as strings -> (values, tolerance of half a unit in the last printed digit)."""
    vals = np.array([float(v) for v in values])
    tol = np.array([0.5 * 10.0 ** Decimal(v).as_tuple().exponent for v in values]) * (1 + 1e-9)
    return vals, tol


def assert_printed(actual, expected_strings, what):
    exp, tol = printed(expected_strings)
    act = np.asarray(torch.as_tensor(actual, dtype=F64))
    assert act.shape == exp.shape, f"{what}: shape {act.shape} vs {exp.shape}"
    bad = np.abs(act - exp) > tol
    assert not bad.any(), f"{what}: got {act[bad].tolist()} where the spec prints {np.array(expected_strings)[bad].tolist()}"


def np_(x):
    return np.asarray(torch.as_tensor(x, dtype=F64))


# ---------------------------------------------------------------------------------------------
# Independent reference schedules (numpy, float64), written from the specs' recipes
# ---------------------------------------------------------------------------------------------
def ref_drl(T, n=1000, beta_start=1e-4, beta_end=0.02):
    """specs/drl.md §2, steps 1-4: per-step a_i as products of √(1−β_k) over index ranges."""
    beta = np.linspace(beta_start, beta_end, n)
    d = n // (2 * (T - 1))
    idx = [i * d for i in range(T)] + [n - 1]
    a = np.empty(T + 1)
    a[0] = math.sqrt(1 - beta[0])
    for i in range(1, T + 1):
        a[i] = np.prod(np.sqrt(1 - beta[idx[i - 1] + 1 : idx[i] + 1]))
    sigma = np.sqrt(1 - a**2)
    abar_sqrt = np.cumprod(a)  # the spec's ā_i
    return {"a": a, "sigma": sigma, "abar_sqrt": abar_sqrt, "sigbar": np.sqrt(1 - abar_sqrt**2), "abar": abar_sqrt**2}


def ref_cosine_logsnr(T, lmin=-5.1, lmax=9.8):
    """specs/cdrl.md §2: λ(u) = −2 ln tan(A u + B), ᾱ = sigmoid(λ)."""
    B = math.atan(math.exp(-lmax / 2))
    A = math.atan(math.exp(-lmin / 2)) - B
    lam = np.array([-2 * math.log(math.tan(A * i / T + B)) for i in range(T + 1)])
    return 1 / (1 + np.exp(-lam))


def ref_vp(T, beta_min=0.1, beta_max=20.0, spacing="uniform", eps=1e-3, beta_clip=0.999):
    """specs/ddaebm.md §2.1-2.3 (DDAEBM's convention: β_0 = σ²(s_0) is a real step)."""
    if spacing == "uniform":
        s = [k / T * (1 - eps) + eps for k in range(T + 1)]
    else:
        d = 1000 // (2 * (T - 1))
        s = [k * d / 999 for k in range(T)] + [1.0]
    abar_c = [math.exp(-beta_min * x - 0.5 * (beta_max - beta_min) * x * x) for x in s]
    abar, prod = [], 1.0
    for k in range(T + 1):
        beta = 1 - abar_c[0] if k == 0 else 1 - abar_c[k] / abar_c[k - 1]
        if k > 0 and beta_clip is not None:
            beta = min(beta, beta_clip)
        prod *= 1 - beta
        abar.append(prod)
    return np.array(abar)


def ref_ddpm_linear(T, beta_start=1e-4, beta_end=0.02):
    return np.concatenate([[1.0], np.cumprod(1 - np.linspace(beta_start, beta_end, T))])


def ref_ddpm_cosine(T, s=0.008, max_beta=0.999):
    """Improved DDPM's `betas_for_alpha_bar`, in plain Python."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    abar, prod = [1.0], 1.0
    for i in range(T):
        prod *= 1 - min(1 - f((i + 1) / T) / f(i / T), max_beta)
        abar.append(prod)
    return np.array(abar)


def reference_abar(spec):
    name, opts = (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items() if k != "name"})
    if name == "drl":
        return ref_drl(opts.get("num_levels", 6))["abar"]
    if name == "cosine_logsnr":
        return ref_cosine_logsnr(opts.get("num_levels", 6), opts.get("logsnr_min", -5.1), opts.get("logsnr_max", 9.8))
    if name == "vp":
        return ref_vp(
            opts.get("num_levels", 4),
            opts.get("beta_min", 0.1),
            opts.get("beta_max", 20.0),
            opts.get("spacing", "uniform"),
            opts.get("eps", 1e-3),
            opts.get("beta_clip", 0.999),
        )
    if name == "ddpm_linear":
        return ref_ddpm_linear(opts.get("num_levels", 1000))
    if name == "ddpm_cosine":
        return ref_ddpm_cosine(opts.get("num_levels", 1000))
    raise AssertionError(name)


def spec_id(spec):
    if isinstance(spec, str):
        return spec
    return spec["name"] + "-" + "-".join(f"{k}={v}" for k, v in spec.items() if k != "name")


# Small schedules for the Monte Carlo and Bayes checks: all five, plus DRL-like VP (ᾱ_0 = 1).
SMALL = [
    "drl",
    "cosine_logsnr",
    "vp",
    {"name": "vp", "spacing": "drl"},
    {"name": "ddpm_linear", "num_levels": 10},
    {"name": "ddpm_cosine", "num_levels": 10},
]
# Plus the default-size and other variants for deterministic table checks.
ALL = SMALL + [
    {"name": "drl", "num_levels": 3},
    {"name": "drl", "num_levels": 10},
    {"name": "drl", "num_levels": 501},
    {"name": "cosine_logsnr", "num_levels": 20, "logsnr_min": -8.0, "logsnr_max": 6.0},
    {"name": "vp", "beta_max": 10.0},
    {"name": "vp", "beta_min": 0.01, "beta_max": 0.1, "beta_clip": None},
    {"name": "vp", "num_levels": 8, "spacing": "drl"},
    {"name": "vp", "beta_clip": 0.5},  # clamps β_2..β_4
    {"name": "vp", "beta_clip": 1e-4},  # clamps every β_k, k ≥ 1, but never β_0 = 1.1e-4
    "ddpm_linear",
    "ddpm_cosine",
]

_CACHE = {}


def build(spec):
    key = spec_id(spec)
    if key not in _CACHE:
        _CACHE[key] = SCHEDULES.build(spec)
    return _CACHE[key]


# ---------------------------------------------------------------------------------------------
# 1. Spec tables
# ---------------------------------------------------------------------------------------------
def test_drl_t6_matches_spec_table():
    """specs/drl.md §2, T = 6 table."""
    s = SCHEDULES.build("drl")
    assert s.num_levels == 6
    assert_printed(s.sqrt_alphas, ["0.99995", "0.946167", "0.856290", "0.774796", "0.700918", "0.633956", "0.022776"], "a_i")
    assert_printed(s.sigmas, ["0.0100", "0.32368", "0.516495", "0.632211", "0.713242", "0.773369", "0.999741"], "σ_i")
    assert_printed(
        s.sqrt_alphas_cumprod, ["0.99995", "0.946119", "0.810152", "0.627703", "0.439968", "0.278921", "0.006353"], "ā_i"
    )
    assert_printed(
        s.sigmas_cumprod, ["0.0100", "0.323818", "0.586219", "0.778453", "0.898013", "0.960314", "0.999980"], "σ̄_i"
    )
    assert_printed(s.log_snr, ["9.21", "2.14", "0.65", "-0.43", "-1.43", "-2.47", "-10.12"], "log-SNR")
    # prose of §2: ᾱ_5 ≈ 0.078 (end of DDPM's first half) and ᾱ_6 = 4.0e-5
    assert_printed(s.alphas_cumprod[[5, 6]], ["0.078", "4.0e-5"], "ᾱ_5, ᾱ_6")


def test_cdrl_t6_matches_spec_table():
    """specs/cdrl.md §2, T = 6 table (β̃_i is the variance of x_{i−1} | x_i, x: library index i−1)."""
    s = SCHEDULES.build("cosine_logsnr")
    assert s.num_levels == 6
    assert_printed(s.log_snr, ["9.800", "2.689", "1.197", "0.141", "-0.876", "-2.172", "-5.100"], "λ")
    assert_printed(
        s.alphas_cumprod, ["0.999945", "0.936364", "0.767969", "0.535209", "0.293992", "0.102258", "0.006060"], "ᾱ_i"
    )
    assert_printed(
        s.sqrt_alphas_cumprod, ["0.99997", "0.96766", "0.87634", "0.73158", "0.54221", "0.31978", "0.07784"], "√ᾱ_i"
    )
    assert_printed(s.sigmas_cumprod, ["0.00745", "0.25226", "0.48170", "0.68176", "0.84024", "0.94749", "0.99697"], "σ̄_i")
    assert_printed(s.alphas[1:], ["0.93642", "0.82016", "0.69692", "0.54930", "0.34782", "0.05926"], "a_i²")
    assert_printed(s.sigmas[1:], ["0.25216", "0.42407", "0.55053", "0.67134", "0.80757", "0.96992"], "σ_i")
    assert_printed(
        s.posterior_variance, ["0.000055", "0.04932", "0.15130", "0.29671", "0.51289", "0.84969"], "β̃_i"
    )


# specs/ddaebm.md §2.5. The LSUN row prints exact 0 / 1 where the value is exactly 0 / 1 (s_0 = 0),
# written here with many zeros so that the check stays tight; ".999 (clamped)" is the clamp.
VP_ROWS = {
    "cifar": (
        {"name": "vp"},
        ["1.10e-4", ".4783", ".8492", ".9564", ".9874"],
        [".0105", ".6916", ".9599", ".9983", "1.0000"],
        ["1.10e-4", ".4409", ".8842", ".9841"],
        [".99983", ".6657", ".2692", ".0578"],
        ["1.66e-4", ".2016", ".1930", ".1119"],
    ),
    "mnist": (
        {"name": "vp", "beta_max": 10.0},
        ["1.05e-4", ".2855", ".6147", ".7922", ".8879"],
        [".0102", ".5344", ".8513", ".9710", ".9968"],
        ["1.05e-4", ".2422", ".6090", ".8426"],
        [".9997", ".7169", ".4409", ".2137"],
        ["3.1e-4", ".2446", ".3504", ".3176"],
    ),
    "lsun_drl_like": (
        {"name": "vp", "spacing": "drl"},
        ["0.000000000", ".2527", ".5686", ".7510", ".999"],
        ["0.000000000", ".5027", ".8232", ".9590", "1.0000"],
        ["0.000000000", ".2121", ".5533", ".9189"],
        ["1.000000000", ".7254", ".4636", ".2830"],
        ["0.000000000", ".2450", ".3677", ".0291"],
    ),
    "toy_no_clip": (
        {"name": "vp", "beta_min": 0.01, "beta_max": 0.1, "beta_clip": None},
        ["1.0e-5", ".0053", ".0109", ".0164", ".0219"],
        [".0032", ".0730", ".1271", ".1797", ".2313"],
        ["1.0e-5", ".0036", ".0082", ".0132"],
        [".9981", ".6721", ".5042", ".4030"],
        [".0019", ".3279", ".4958", ".5969"],
    ),
}


@pytest.mark.parametrize("row", list(VP_ROWS))
def test_vp_matches_ddaebm_numbers_table(row):
    spec, betas, sigbar, post_var, c1, c2 = VP_ROWS[row]
    s = SCHEDULES.build(spec)
    assert s.num_levels == 4
    assert_printed(s.betas, betas, f"{row} β_k")
    assert_printed(s.sigmas_cumprod, sigbar, f"{row} √(1−ᾱ_k)")
    assert_printed(s.posterior_variance, post_var, f"{row} σ̃²_k")
    assert_printed(s.posterior_coef_x0, c1, f"{row} c1_k")
    assert_printed(s.posterior_coef_xnext, c2, f"{row} c2_k")


def test_vp_times_match_spec():
    """specs/ddaebm.md §2.2: the T = 4 times of both spacings."""
    assert_printed(SCHEDULES.build("vp").times(), ["0.001", "0.25075", "0.5005", "0.75025", "1.0"], "uniform s_k")
    assert_printed(
        SCHEDULES.build({"name": "vp", "spacing": "drl"}).times(), ["0.00000", "0.16617", "0.33233", "0.49850", "1.0"], "DRL s_k"
    )


def test_vp_unclipped_equals_continuous_marginal():
    """DDAEBM: with no clamp active, ᾱ_k = ᾱ(s_k) exactly (β_0 = σ²(s_0) is a real step)."""
    for bmax, clip in [(20.0, 0.999), (10.0, 0.999), (0.1, None)]:
        bmin = 0.01 if clip is None else 0.1
        s = SCHEDULES.build({"name": "vp", "beta_min": bmin, "beta_max": bmax, "beta_clip": clip})
        times = [k / 4 * (1 - 1e-3) + 1e-3 for k in range(5)]
        expected = np.exp([-bmin * x - 0.5 * (bmax - bmin) * x * x for x in times])
        np.testing.assert_allclose(np_(s.alphas_cumprod), expected, rtol=1e-12)
    # the LSUN clamp is active at the top step: there ᾱ_4 = ᾱ_3 · 0.001 instead of ᾱ(1) = e^{−10.05}
    s = SCHEDULES.build({"name": "vp", "spacing": "drl"})
    assert s.alphas_cumprod[4].item() == pytest.approx(s.alphas_cumprod[3].item() * 1e-3, rel=1e-12)
    assert s.alphas_cumprod[4].item() > 1.5 * math.exp(-10.05)


@pytest.mark.parametrize("T", [2, 3, 10, 37, 501])
def test_drl_other_T_match_numpy_recipe(T):
    s = SCHEDULES.build({"name": "drl", "num_levels": T})
    ref = ref_drl(T)
    assert s.num_levels == T
    np.testing.assert_allclose(np_(s.sqrt_alphas), ref["a"], rtol=1e-11)
    np.testing.assert_allclose(np_(s.sigmas), ref["sigma"], rtol=1e-9)
    np.testing.assert_allclose(np_(s.sqrt_alphas_cumprod), ref["abar_sqrt"], rtol=1e-11)
    np.testing.assert_allclose(np_(s.sigmas_cumprod), ref["sigbar"], rtol=1e-9)
    np.testing.assert_allclose(np_(s.log_snr), np.log(ref["abar"] / (1 - ref["abar"])), rtol=1e-9, atol=1e-9)
    # level 0 is data after DDPM's first step, the top level is DDPM's last step
    assert s.sigmas_cumprod[0].item() == pytest.approx(0.01, rel=1e-12)
    assert s.alphas_cumprod[-1].item() == pytest.approx(np.prod(1 - np.linspace(1e-4, 0.02, 1000)), rel=1e-11)


@pytest.mark.parametrize("spec", ALL, ids=spec_id)
def test_alphas_cumprod_match_reference(spec):
    s = build(spec)
    ref = reference_abar(spec)
    assert s.alphas_cumprod.dtype == F64
    assert s.num_levels == len(ref) - 1
    np.testing.assert_allclose(np_(s.alphas_cumprod), ref, rtol=1e-11, atol=0)


def test_cosine_logsnr_endpoints_and_custom_range():
    s = SCHEDULES.build({"name": "cosine_logsnr", "num_levels": 7, "logsnr_min": -3.0, "logsnr_max": 4.0})
    assert s.log_snr[0].item() == pytest.approx(4.0, abs=1e-12)
    assert s.log_snr[-1].item() == pytest.approx(-3.0, abs=1e-12)
    # λ(u) = −2 ln tan(A u + B) at the midpoint, from the endpoints only
    B, A = math.atan(math.exp(-2.0)), math.atan(math.exp(1.5)) - math.atan(math.exp(-2.0))
    lam = -2 * math.log(math.tan(A * 3 / 7 + B))
    assert s.log_snr[3].item() == pytest.approx(lam, abs=1e-12)


def test_langevin_step_sizes_match_spec_tables():
    """specs/drl.md §3 (b² = 2e-4) and specs/cdrl.md §3 (b² = 4e-4 image, 2e-3 constant-c toy)."""
    drl = SCHEDULES.build("drl")
    s2 = drl.langevin_step_sizes(2e-4)
    assert_printed(s2, ["2.10e-5", "1.73e-3", "4.69e-3", "7.92e-3", "1.07e-2", "1.92e-2"], "DRL s_t²")
    assert_printed(s2.sqrt(), ["0.00458", "0.0416", "0.0685", "0.0890", "0.1036", "0.1386"], "DRL s_t")
    c = s2 / (2e-4 * torch.as_tensor(ref_drl(6)["sigma"][1:]) ** 2)
    assert_printed(c, ["1.000", "32.38", "58.62", "77.85", "89.80", "96.03"], "DRL c_t")

    cdrl = SCHEDULES.build("cosine_logsnr")
    s2 = cdrl.langevin_step_sizes(4e-4)
    assert_printed(s2, ["2.54e-5", "2.44e-3", "7.84e-3", "1.65e-2", "2.94e-2", "4.79e-2"], "CDRL s_i²")
    abar = ref_cosine_logsnr(6)
    sig2 = 1 - abar[1:] / abar[:-1]
    assert_printed(s2 / (4e-4 * torch.as_tensor(sig2)), ["1.000", "33.88", "64.69", "91.56", "112.84", "127.24"], "CDRL c_i")
    toy = cdrl.langevin_step_sizes(2e-3, c_rule="constant")
    assert_printed(toy / torch.as_tensor(sig2), ["0.2686"] * 6, "CDRL toy s²/σ²")
    with pytest.raises(ValueError, match="c_rule"):
        cdrl.langevin_step_sizes(2e-3, c_rule="nope")
    with pytest.raises(ValueError, match="σ̄_0 > 0"):
        SCHEDULES.build({"name": "ddpm_linear", "num_levels": 5}).langevin_step_sizes(1e-3)


# ---------------------------------------------------------------------------------------------
# 2. Structure, composition and marginals
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL, ids=spec_id)
def test_structure_and_composition_of_steps(spec):
    s = build(spec)
    abar = np_(s.alphas_cumprod)
    assert np.all(abar > 0) and np.all(abar <= 1)
    assert np.all(np.diff(abar) < 0), "ᾱ must decrease strictly"
    # one-step quantities from the reference table, then composed back
    ref = reference_abar(spec)
    alpha = ref / np.concatenate([[1.0], ref[:-1]])
    np.testing.assert_allclose(np_(s.alphas), alpha, rtol=1e-11)
    np.testing.assert_allclose(np_(s.sqrt_alphas), np.sqrt(alpha), rtol=1e-11)
    np.testing.assert_allclose(np_(s.betas), 1 - alpha, rtol=1e-8, atol=1e-15)
    np.testing.assert_allclose(np_(s.sigmas) ** 2 + np_(s.sqrt_alphas) ** 2, 1.0, rtol=1e-13)
    np.testing.assert_allclose(np.cumprod(np_(s.alphas)), abar, rtol=1e-11)  # ᾱ_t = Π α
    np.testing.assert_allclose(np_(s.sqrt_alphas_cumprod) ** 2 + np_(s.sigmas_cumprod) ** 2, 1.0, rtol=1e-13)
    # variance-preserving one step: a² (1 − ᾱ_t) + σ² = 1 − ᾱ_{t+1}
    a2, sig2 = np_(s.sqrt_alphas)[1:] ** 2, np_(s.sigmas)[1:] ** 2
    np.testing.assert_allclose(a2 * (1 - abar[:-1]) + sig2, 1 - abar[1:], rtol=1e-10, atol=1e-15)
    # table lengths
    T = s.num_levels
    for name in ("posterior_variance", "posterior_coef_x0", "posterior_coef_xnext", "recovery_scale", "recovery_tether"):
        assert getattr(s, name).shape == (T,), name
    lv = s.levels(500, generator=torch.Generator().manual_seed(0))
    assert lv.min() >= 0 and lv.max() <= T - 1


def _mc_tol(var, n, k=5.0):
    """k-sigma tolerances for the sample mean and the sample variance of n normal draws."""
    return k * math.sqrt(var / n) + 1e-12, k * var * math.sqrt(2 / (n - 1)) + 1e-12


@pytest.mark.parametrize("spec", SMALL, ids=spec_id)
def test_q_step_chain_matches_q_sample_marginal(spec):
    s = build(spec)
    ref = reference_abar(spec)
    n, x0_val = 40_000, 1.7
    g = torch.Generator().manual_seed(1234)
    x0 = torch.full((n,), x0_val, dtype=F64)
    x = s.q_sample(x0, torch.zeros(n, dtype=torch.long), generator=g)
    for t in range(s.num_levels + 1):
        if t > 0:
            x = s.q_step(x, torch.full((n,), t - 1), generator=g)
        mean_tol, var_tol = _mc_tol(1 - ref[t], n)
        assert abs(x.mean().item() - math.sqrt(ref[t]) * x0_val) < mean_tol, f"level {t} mean"
        assert abs(x.var().item() - (1 - ref[t])) < var_tol, f"level {t} variance"


@pytest.mark.parametrize("spec", SMALL, ids=spec_id)
def test_q_sample_empirical_mean_and_variance(spec):
    s = build(spec)
    ref = reference_abar(spec)
    T, n = s.num_levels, 30_000
    g = torch.Generator().manual_seed(99)
    x0_vals = torch.tensor([-2.0, 0.5, 3.0], dtype=F64)
    t = torch.arange(T + 1).repeat_interleave(n)
    x0 = x0_vals.expand(t.numel(), 3).clone()
    xt = s.q_sample(x0, t, generator=g).reshape(T + 1, n, 3)
    for lvl in range(T + 1):
        mean_tol, var_tol = _mc_tol(1 - ref[lvl], n)
        for j in range(3):
            col = xt[lvl, :, j]
            assert abs(col.mean().item() - math.sqrt(ref[lvl]) * x0_vals[j].item()) < mean_tol
            assert abs(col.var().item() - (1 - ref[lvl])) < var_tol


@pytest.mark.parametrize("spec", SMALL, ids=spec_id)
def test_q_sample_and_q_step_with_given_noise_broadcast_per_row(spec):
    """Deterministic formulas with explicit noise, mixed levels in one batch, image-shaped x."""
    s = build(spec)
    ref = reference_abar(spec)
    T = s.num_levels
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, T, (16,), generator=g)
    x0 = torch.randn(16, 2, 3, 3, generator=g, dtype=F64)
    eps = torch.randn(16, 2, 3, 3, generator=g, dtype=F64)
    tn = t.numpy()
    shape = (16, 1, 1, 1)
    expected = np.sqrt(ref[tn]).reshape(shape) * x0.numpy() + np.sqrt(1 - ref[tn]).reshape(shape) * eps.numpy()
    np.testing.assert_allclose(s.q_sample(x0, t, eps).numpy(), expected, rtol=1e-12, atol=1e-12)
    a = np.sqrt(ref[tn + 1] / ref[tn]).reshape(shape)
    expected = a * x0.numpy() + np.sqrt(1 - a**2) * eps.numpy()
    np.testing.assert_allclose(s.q_step(x0, t, eps).numpy(), expected, rtol=1e-12, atol=1e-12)
    # float32 inputs stay float32
    assert s.q_sample(x0.float(), t, eps.float()).dtype == torch.float32
    assert s.q_step(x0.float(), t, eps.float()).dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# 3. Posterior against Bayes' rule on a grid
# ---------------------------------------------------------------------------------------------
def _grid_posterior(abar, t, x0, x_next):
    """Mean and variance of p(x_t) ∝ N(x_t; √ᾱ_t x0, 1−ᾱ_t) · N(x_next; a x_t, 1−a²), numerically."""
    m, v = math.sqrt(abar[t]) * x0, 1 - abar[t]
    a2 = abar[t + 1] / abar[t]
    x = np.linspace(m - 12 * math.sqrt(v), m + 12 * math.sqrt(v), 60_001)
    logp = -((x - m) ** 2) / (2 * v) - (x_next - math.sqrt(a2) * x) ** 2 / (2 * (1 - a2))
    w = np.exp(logp - logp.max())
    trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy ≥ 2 renamed it
    z = trapz(w, x)
    mean = trapz(x * w, x) / z
    var = trapz((x - mean) ** 2 * w, x) / z
    return mean, var, math.sqrt(v)


POSTERIOR_CASES = [(spec, t) for spec in SMALL + ["ddpm_linear", "ddpm_cosine"] for t in (0, 1, 2, 3, 5, 9, 500, 998, 999)]
# level t with ᾱ_t = 1 has a point-mass posterior: tested separately (test_posterior_point_mass_at_clean_level)
POSTERIOR_CASES = [(spec, t) for spec, t in POSTERIOR_CASES if t < len(reference_abar(spec)) - 1 and reference_abar(spec)[t] < 1]


@pytest.mark.parametrize("spec,t", POSTERIOR_CASES, ids=[f"{spec_id(s)}-t{t}" for s, t in POSTERIOR_CASES])
def test_posterior_matches_numerical_bayes(spec, t):
    s = build(spec)
    ref = reference_abar(spec)
    for x0, z in [(1.3, 0.7), (-0.4, -1.6), (2.5, 0.0)]:
        x_next = math.sqrt(ref[t + 1]) * x0 + math.sqrt(1 - ref[t + 1]) * z
        mean_ref, var_ref, prior_std = _grid_posterior(ref, t, x0, x_next)
        mean, var = s.q_posterior(
            torch.tensor([x_next], dtype=F64), torch.tensor([x0], dtype=F64), torch.tensor([t])
        )
        assert abs(mean.item() - mean_ref) < 1e-8 * prior_std + 1e-12, (x0, z)
        assert var.item() == pytest.approx(var_ref, rel=1e-7), (x0, z)
        # and the tables the spec names σ̃², c1, c2 give the same
        assert s.posterior_variance[t].item() == pytest.approx(var_ref, rel=1e-7)
        c1, c2 = s.posterior_coef_x0[t].item(), s.posterior_coef_xnext[t].item()
        assert abs(c1 * x0 + c2 * x_next - mean_ref) < 1e-8 * prior_std + 1e-12


@pytest.mark.parametrize(
    "spec",
    [{"name": "vp", "spacing": "drl"}, {"name": "ddpm_linear", "num_levels": 10}, {"name": "ddpm_cosine", "num_levels": 10}, "ddpm_linear"],
    ids=spec_id,
)
def test_posterior_point_mass_at_clean_level(spec):
    s = build(spec)
    assert s.alphas_cumprod[0].item() == 1.0
    assert s.sigmas_cumprod[0].item() == 0.0
    x0 = torch.tensor([[-1.0, 0.25, 4.0]], dtype=F64)
    x_next = torch.tensor([[3.0, -2.0, 0.1]], dtype=F64)
    mean, var = s.q_posterior(x_next, x0, torch.tensor([0]))
    assert torch.all(var == 0)
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-14)
    # q_sample at level 0 returns the data itself
    torch.testing.assert_close(s.q_sample(x0, torch.tensor([0]), generator=torch.Generator().manual_seed(0)), x0, rtol=0, atol=0)


def test_posterior_batch_and_image_shapes():
    s = build("drl")
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 3, 4, 4, generator=g, dtype=F64)
    xn = torch.randn(5, 3, 4, 4, generator=g, dtype=F64)
    t = torch.tensor([0, 5, 2, 2, 4])
    mean, var = s.q_posterior(xn, x0, t)
    assert mean.shape == x0.shape and var.shape == (5, 1, 1, 1)
    for i in range(5):
        m1, v1 = s.q_posterior(xn[i : i + 1], x0[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(mean[i : i + 1], m1, rtol=1e-14, atol=1e-14)
        assert var[i].item() == v1.item()


# ---------------------------------------------------------------------------------------------
# 4. DDPM linear / cosine
# ---------------------------------------------------------------------------------------------
def test_ddpm_linear_betas():
    s = build("ddpm_linear")
    assert s.num_levels == 1000
    assert s.betas[0].item() == 0.0 and s.alphas_cumprod[0].item() == 1.0
    np.testing.assert_allclose(np_(s.betas[1:]), np.linspace(1e-4, 0.02, 1000), rtol=1e-9, atol=1e-16)
    s = SCHEDULES.build({"name": "ddpm_linear", "num_levels": 10, "beta_start": 0.001, "beta_end": 0.3})
    np.testing.assert_allclose(np_(s.betas[1:]), np.linspace(0.001, 0.3, 10), rtol=1e-12)


@pytest.mark.parametrize("T", [10, 1000])
def test_ddpm_cosine_closed_form_and_clip(T):
    s = build({"name": "ddpm_cosine", "num_levels": T}) if T == 10 else build("ddpm_cosine")
    sh = 0.008
    f = np.cos((np.arange(T + 1) / T + sh) / (1 + sh) * np.pi / 2) ** 2
    closed = f / f[0]
    beta_unclipped = 1 - closed[1:] / closed[:-1]
    clipped = np.nonzero(beta_unclipped > 0.999)[0]
    assert clipped.tolist() == [T - 1], "only the last step hits the 0.999 clip"
    first = clipped[0] + 1  # ᾱ_t is the closed form for every t before the first clipped step
    np.testing.assert_allclose(np_(s.alphas_cumprod[:first]), closed[:first], rtol=1e-10)
    betas = np_(s.betas)
    assert np.all(betas <= 0.999 + 1e-12)
    assert betas[-1] == pytest.approx(0.999, abs=1e-12)
    assert s.alphas_cumprod[-1].item() == pytest.approx(closed[T - 1] * 1e-3, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# 5. q_pair
# ---------------------------------------------------------------------------------------------
PAIR_CASES = [(spec, t) for spec in SMALL for t in (1, build(spec).num_levels - 1)]


@pytest.mark.parametrize("spec,t", PAIR_CASES, ids=[f"{spec_id(s)}-t{t}" for s, t in PAIR_CASES])
def test_q_pair_exact_joint(spec, t):
    s = build(spec)
    ref = reference_abar(spec)
    n, x0_val = 100_000, -1.1
    x0 = torch.full((n,), x0_val, dtype=F64)
    xt, xn = s.q_pair(x0, torch.full((n,), t), shared_noise=False, generator=torch.Generator().manual_seed(7))
    vt, vn = 1 - ref[t], 1 - ref[t + 1]
    a = math.sqrt(ref[t + 1] / ref[t])
    for x, m, v in [(xt, math.sqrt(ref[t]) * x0_val, vt), (xn, math.sqrt(ref[t + 1]) * x0_val, vn)]:
        mean_tol, var_tol = _mc_tol(v, n)
        assert abs(x.mean().item() - m) < mean_tol
        assert abs(x.var().item() - v) < var_tol
    cov_ref = a * vt
    cov = ((xt - xt.mean()) * (xn - xn.mean())).mean().item()
    assert abs(cov - cov_ref) < 5 * math.sqrt((vt * vn + cov_ref**2) / n)
    # the one-step residual is independent of x_t with variance 1 − a²
    r = xn - a * xt
    mean_tol, var_tol = _mc_tol(1 - a * a, n)
    assert abs(r.var().item() - (1 - a * a)) < var_tol
    assert abs(((r - r.mean()) * (xt - xt.mean())).mean().item()) < 5 * math.sqrt(vt * (1 - a * a) / n)
    # the shared-noise coupling would have covariance σ̄_t σ̄_{t+1}: make sure the test can tell
    assert abs(math.sqrt(vt * vn) - cov_ref) > 10 * math.sqrt((vt * vn + cov_ref**2) / n)


@pytest.mark.parametrize("spec,t", PAIR_CASES, ids=[f"{spec_id(s)}-t{t}" for s, t in PAIR_CASES])
def test_q_pair_shared_noise(spec, t):
    s = build(spec)
    ref = reference_abar(spec)
    n = 100_000
    x0 = torch.tensor([-1.1, 0.4], dtype=F64).expand(n, 2).clone()
    xt, xn = s.q_pair(x0, torch.full((n,), t), shared_noise=True, generator=torch.Generator().manual_seed(8))
    for j, x0_val in enumerate([-1.1, 0.4]):
        for x, lvl in [(xt[:, j], t), (xn[:, j], t + 1)]:
            mean_tol, var_tol = _mc_tol(1 - ref[lvl], n)
            assert abs(x.mean().item() - math.sqrt(ref[lvl]) * x0_val) < mean_tol
            assert abs(x.var().item() - (1 - ref[lvl])) < var_tol
    # x_{t+1} is a deterministic function of (x_t, x0): the same ε in both marginals
    eps = (xt - math.sqrt(ref[t]) * x0) / math.sqrt(1 - ref[t])
    expected = math.sqrt(ref[t + 1]) * x0 + math.sqrt(1 - ref[t + 1]) * eps
    torch.testing.assert_close(xn, expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# 6. Errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 0, 502, 1000])
def test_drl_num_levels_out_of_range(T):
    with pytest.raises(ComponentError) as exc:
        SCHEDULES.build({"name": "drl", "num_levels": T})
    msg = str(exc.value)
    assert "schedules 'drl'" in msg and "num_levels" in msg and repr(T) in msg


@pytest.mark.parametrize("lo,hi", [(2.0, 2.0), (3.0, -1.0)])
def test_cosine_logsnr_unordered_range(lo, hi):
    with pytest.raises(ComponentError) as exc:
        SCHEDULES.build({"name": "cosine_logsnr", "logsnr_min": lo, "logsnr_max": hi})
    assert "logsnr_min" in str(exc.value) and "logsnr_max" in str(exc.value)


@pytest.mark.parametrize("name", ["drl", "cosine_logsnr", "vp", "ddpm_linear", "ddpm_cosine"])
def test_unknown_option_is_named(name):
    with pytest.raises(ComponentError) as exc:
        SCHEDULES.build({"name": name, "num_levelz": 4})
    msg = str(exc.value)
    assert f"schedules '{name}'" in msg and "num_levelz" in msg


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"name": "vp", "beta_min": 5.0, "beta_max": 1.0}, "beta_max"),
        ({"name": "vp", "spacing": "drl", "num_levels": 1}, "spacing"),
        ({"name": "vp", "spacing": "log"}, "spacing"),
        ({"name": "ddpm_linear", "num_levels": 0}, "num_levels"),
        ({"name": "ddpm_cosine", "max_beta": 1.5}, "max_beta"),
        ({"name": "drl", "num_levels": "six"}, "num_levels"),
    ],
    ids=lambda v: v if isinstance(v, str) else spec_id(v),
)
def test_bad_option_values_name_the_field(spec, field):
    with pytest.raises(ComponentError) as exc:
        SCHEDULES.build(spec)
    assert field in str(exc.value)


def test_drl_upper_bound_501_is_accepted():
    s = SCHEDULES.build({"name": "drl", "num_levels": 501})
    assert s.num_levels == 501 and s.sqrt_alphas[-1].item() == pytest.approx(ref_drl(501)["a"][-1], rel=1e-11)


# ---------------------------------------------------------------------------------------------
# 7. Recovery scale and tether
# ---------------------------------------------------------------------------------------------
def test_drl_recovery_scale_and_tether():
    s = SCHEDULES.build("drl")
    assert_printed(s.recovery_scale, ["0.946167", "0.856290", "0.774796", "0.700918", "0.633956", "1.000000000"], "a_{t+1}")
    assert s.recovery_scale[-1].item() == 1.0
    assert s.recovery_tether.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    # the tables the constructor holds are not aliased: the top one-step scale is still a_6
    assert_printed(s.sqrt_alphas[-1:], ["0.022776"], "a_6")

    tethered = SCHEDULES.build({"name": "drl", "untethered_top": False})
    np.testing.assert_allclose(np_(tethered.recovery_scale), ref_drl(6)["a"][1:], rtol=1e-11)
    assert tethered.recovery_tether.tolist() == [1.0] * 6


def test_cosine_logsnr_untethered_top_by_default():
    s = SCHEDULES.build("cosine_logsnr")
    abar = ref_cosine_logsnr(6)
    np.testing.assert_allclose(np_(s.recovery_scale[:-1]), np.sqrt(abar[1:-1] / abar[:-2]), rtol=1e-11)
    assert s.recovery_scale[-1].item() == 1.0 and s.recovery_tether.tolist() == [1.0] * 5 + [0.0]


def test_vp_recovery_scale_tethered_by_default():
    s = SCHEDULES.build("vp")
    assert s.config.untethered_top is False
    # a_{k+1} = √(1 − β_{k+1}) from the β row of specs/ddaebm.md §2.5 (CIFAR)
    # (printed to 4 decimals: |δa| ≤ δβ / (2a) with δβ = 5e-5), and from the reference recipe
    betas = np.array([0.4783, 0.8492, 0.9564, 0.9874])
    a_spec = np.sqrt(1 - betas)
    assert np.all(np.abs(np_(s.recovery_scale) - a_spec) <= 5e-5 / (2 * a_spec) + 1e-9)
    abar = ref_vp(4)
    np.testing.assert_allclose(np_(s.recovery_scale), np.sqrt(abar[1:] / abar[:-1]), rtol=1e-11)
    assert s.recovery_tether.tolist() == [1.0] * 4

    u = SCHEDULES.build({"name": "vp", "untethered_top": True})
    assert u.recovery_scale.tolist()[:3] == s.recovery_scale.tolist()[:3]
    assert u.recovery_scale[-1].item() == 1.0 and u.recovery_tether.tolist() == [1.0, 1.0, 1.0, 0.0]
