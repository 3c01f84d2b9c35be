"""The 2D toy sets of the EBM and flow literature, each as its reference code draws it.

Sources: FFJORD `toy_data.py` (checkerboard, pinwheel, 2spirals, rings, moons, swissroll),
DxMI `loader/synthetic.py` (8gaussians), DDAEBM `data_process/toy_data.py` (25gaussians).
Where the reference fixes counts per mode (linspace angles, stacked halves, stratified
batches), we draw the mode at random instead: the same distribution, and every point comes
from the generator. All live in the plotting box [−4, 4]².
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmkit.data.base import Dataset
from ebmkit.registry import DATASETS, Options


class ToyOptions(Options):
    """No options: a toy set is fixed by its paper's definition."""


class ToyDataset(Dataset):
    Options = ToyOptions
    dim = 2
    box = (-4.0, 4.0)

    def __init__(self, options: ToyOptions | None = None):
        self.config = options if options is not None else ToyOptions()


def _rand(n: int, g, *shape) -> Tensor:
    return torch.rand(n, *shape, generator=g, dtype=torch.float64)


def _randn(n: int, g, *shape) -> Tensor:
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def _as_float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


_ANGLES_45 = torch.arange(8, dtype=torch.float64) * (math.pi / 4)  # k · 45°
_GRID_2 = torch.arange(-2, 3, dtype=torch.float64) * 2  # 2i, i ∈ {−2..2}


class GaussianMixture(ToyDataset):
    """x = (μ_k + σ ε) / s with k uniform: equal-weight isotropic Gaussians, then a global
    rescale by the reference code's literal divisor s."""

    has_log_prob = True
    centres: Tensor  # μ_k before the rescale, (K, 2)
    std: float  # σ before the rescale
    divisor: float  # s

    def _sample(self, n, g):
        k = torch.randint(0, len(self.centres), (n,), generator=g)
        return (self.centres[k] + self.std * _randn(n, g, 2)) / self.divisor

    def log_prob(self, x: Tensor) -> Tensor:
        x = _as_float(x)
        mu = (self.centres / self.divisor).to(x.device, torch.float64)
        var = (self.std / self.divisor) ** 2
        d2 = ((x.double()[:, None, :] - mu) ** 2).sum(-1)  # (n, K)
        log_n = -d2 / (2 * var) - math.log(2 * math.pi * var)
        return (torch.logsumexp(log_n, dim=1) - math.log(len(mu))).to(x.dtype)


@DATASETS.register("8gaussians")
class EightGaussians(GaussianMixture):
    """8 Gaussians on a circle of radius 2.83, std 0.354 (DxMI: radius 4, std 0.5, ÷1.414)."""

    centres = 4.0 * torch.stack([_ANGLES_45.cos(), _ANGLES_45.sin()], 1)
    std = 0.5
    divisor = 1.414


@DATASETS.register("25gaussians")
class TwentyFiveGaussians(GaussianMixture):
    """5×5 grid of Gaussians, spacing 0.707, std 0.035 (DDAEBM: centres (2i, 2j), std 0.1, ÷2.828)."""

    centres = torch.cartesian_prod(_GRID_2, _GRID_2)
    std = 0.1
    divisor = 2.828


@DATASETS.register("checkerboard")
class Checkerboard(ToyDataset):
    """Uniform on the 8 dark squares (side 2) of a 4×4 checkerboard on [−4, 4]² (FFJORD ×2)."""

    has_log_prob = True

    def _sample(self, n, g):
        x1 = _rand(n, g) * 4 - 2
        x2_ = _rand(n, g) - torch.randint(0, 2, (n,), generator=g) * 2
        x2 = x2_ + torch.remainder(torch.floor(x1), 2)
        return torch.stack([x1, x2], 1) * 2

    def log_prob(self, x: Tensor) -> Tensor:
        # Square (i, j) = (⌊x1/2⌋, ⌊x2/2⌋) ∈ {−2..1}² is dark when i + j is even; the outer edge
        # x = 4 counts as inside so points clamped onto the box keep their density.
        x = _as_float(x)
        inside = ((x >= -4) & (x <= 4)).all(1)
        ij = torch.floor(x / 2).clamp(-2, 1)
        dark = torch.remainder(ij.sum(1), 2) == 0
        out = torch.full(x.shape[:1], -math.inf, dtype=x.dtype, device=x.device)
        return out.masked_fill(inside & dark, -math.log(32.0))  # 8 squares of area 4


@DATASETS.register("pinwheel")
class Pinwheel(ToyDataset):
    """5 curved arms: radial std 0.3, tangential std 0.1, rate 0.25, ×2 (FFJORD, DDAEBM)."""

    num_classes, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    has_log_prob = True

    def _sample(self, n, g):
        rads = torch.linspace(0, 2 * math.pi, self.num_classes + 1, dtype=torch.float64)[:-1]
        f = _randn(n, g, 2) * torch.tensor([self.radial_std, self.tangential_std], dtype=torch.float64)
        f[:, 0] += 1.0
        labels = torch.randint(0, self.num_classes, (n,), generator=g)
        a = rads[labels] + self.rate * torch.exp(f[:, 0])
        c, s = a.cos(), a.sin()
        # FFJORD's einsum("ti,tij->tj", f, [[c, −s], [s, c]]) multiplies by the row vector,
        # i.e. rotates by −a; kept so the arms curl the same way as in the papers' figures.
        return 2 * torch.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], 1)

    def log_prob(self, x: Tensor, n_angles: int = 512) -> Tensor:
        """Change of variables in polar coordinates. With f = r(cos ψ, sin ψ), x = 2 R(−a) f has
        ‖x‖ = 2r and angle φ = ψ − a_l − rate·e^{f_0}; so for each arm the preimages are the roots
        ψ of that angle equation (found on a grid of ``n_angles``, refined linearly), and

            p(x) = (1/5) Σ_arms Σ_roots N(f) / (4 |∂φ/∂ψ|),   ∂φ/∂ψ = 1 + rate · f_1 e^{f_0}.
        """
        x = _as_float(x)
        xd = x.double().cpu()
        r = xd.norm(dim=1, keepdim=True) / 2  # (n, 1)
        phi = torch.atan2(xd[:, 1], xd[:, 0])[:, None]
        psi = torch.linspace(0, 2 * math.pi, n_angles + 1, dtype=torch.float64)[:-1]
        arms = torch.linspace(0, 2 * math.pi, self.num_classes + 1, dtype=torch.float64)[:-1]
        total = torch.zeros(len(xd), dtype=torch.float64)
        for start in range(0, len(xd), 1024):
            rr, ph = r[start:start + 1024], phi[start:start + 1024]
            for arm in arms:
                g = torch.remainder(psi - self.rate * torch.exp(rr * psi.cos()) - arm - ph + math.pi, 2 * math.pi) - math.pi
                g_next = g.roll(-1, dims=1)
                crossing = (((g <= 0) & (g_next > 0)) | ((g > 0) & (g_next <= 0))) & ((g - g_next).abs() < math.pi)
                w = g / (g - g_next).where(crossing, torch.ones_like(g))  # linear refinement
                root = psi + w * (2 * math.pi / n_angles)
                f0, f1 = rr * root.cos(), rr * root.sin()
                log_nf = (-0.5 * ((f0 - 1) / self.radial_std) ** 2 - 0.5 * (f1 / self.tangential_std) ** 2
                          - math.log(2 * math.pi * self.radial_std * self.tangential_std))
                jac = (1 + self.rate * f1 * torch.exp(f0)).abs()
                total[start:start + 1024] += torch.where(crossing, (log_nf).exp() / (4 * jac), 0.0).sum(1)
        return (total / self.num_classes).log().to(x.dtype).to(x.device)


@DATASETS.register("swissroll")
class SwissRoll(ToyDataset):
    """sklearn's make_swiss_roll(noise=1.0), columns (0, 2), ÷5 (FFJORD, DDAEBM)."""

    has_log_prob = True
    t_range = (1.5 * math.pi, 4.5 * math.pi)

    def _sample(self, n, g):
        t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
        return (torch.stack([t * t.cos(), t * t.sin()], 1) + _randn(n, g, 2)) / 5

    def log_prob(self, x: Tensor, n_nodes: int = 2049) -> Tensor:
        """p(x) = ∫ U(t) · 25 N(5x; (t cos t, t sin t), I) dt by Simpson's rule in t: the curve
        moves ≤ 14.2 per unit t, so 2049 nodes put ≤ 0.07 noise-widths between nodes."""
        x = _as_float(x)
        t = torch.linspace(*self.t_range, n_nodes, dtype=torch.float64)
        w = torch.ones(n_nodes, dtype=torch.float64)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        log_w = (w * (t[1] - t[0]) / 3 / (self.t_range[1] - self.t_range[0])).log()  # Simpson × U(t)
        curve = torch.stack([t * t.cos(), t * t.sin()], 1)
        out = []
        for chunk in (5 * x.double().cpu()).split(1024):
            d2 = ((chunk[:, None, :] - curve) ** 2).sum(-1)
            out.append(torch.logsumexp(log_w - d2 / 2, dim=1) - math.log(2 * math.pi) + 2 * math.log(5))
        return torch.cat(out).to(x.dtype).to(x.device)


@DATASETS.register("2spirals")
class TwoSpirals(ToyDataset):
    """Two interleaved spirals of 1.5 turns, point-symmetric about 0 (FFJORD)."""

    def _sample(self, n, g):
        t = _rand(n, g).sqrt() * 540 * (2 * math.pi) / 360
        d1x = -t.cos() * t + _rand(n, g) * 0.5
        d1y = t.sin() * t + _rand(n, g) * 0.5
        sign = 1 - 2 * torch.randint(0, 2, (n, 1), generator=g)  # FFJORD stacks d1 and −d1
        return sign * torch.stack([d1x, d1y], 1) / 3 + 0.1 * _randn(n, g, 2)


@DATASETS.register("rings")
class Rings(ToyDataset):
    """4 concentric circles of radius 3, 2.25, 1.5, 0.75 with N(0, 0.08²) noise (FFJORD)."""

    def _sample(self, n, g):
        radius = 3.0 * (1 - 0.25 * torch.randint(0, 4, (n,), generator=g))
        theta = 2 * math.pi * _rand(n, g)
        return radius[:, None] * torch.stack([theta.cos(), theta.sin()], 1) + 0.08 * _randn(n, g, 2)


@DATASETS.register("moons")
class Moons(ToyDataset):
    """Two interleaving half circles: sklearn's make_moons(noise=0.1), ×2, shifted by (−1, −0.2) (FFJORD)."""

    def _sample(self, n, g):
        t = math.pi * _rand(n, g)
        outer = torch.stack([t.cos(), t.sin()], 1)
        inner = torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)
        which = torch.randint(0, 2, (n, 1), generator=g).bool()
        x = torch.where(which, inner, outer) + 0.1 * _randn(n, g, 2)
        return x * 2 + torch.tensor([-1.0, -0.2], dtype=torch.float64)
