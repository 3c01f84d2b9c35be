"""Fréchet distance between feature statistics, shared by FID and FD-FMNIST.

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)      (Heusel et al. 2017, Eq. 6)

Everything here is pytorch-fid's: its formula (``calculate_frechet_distance``), its statistics
(float64 mean and ``np.cov(rowvar=False)`` of the features) and its ``.npz`` format (``mu``,
``sigma``), so a number or a statistics file from ebmkit means what it means there. What ebmkit
adds is the on-disk cache of a reference set's statistics, keyed by everything they depend on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor


class MetricError(ValueError):
    """A metric cannot be computed as asked: one message names what is wrong and what to do."""


@dataclass(frozen=True)
class FeatureStats:
    """Mean (d,) and covariance (d, d) of n feature vectors, float64."""

    mu: np.ndarray
    sigma: np.ndarray


def feature_stats(features: np.ndarray) -> FeatureStats:
    """pytorch-fid's ``calculate_activation_statistics`` on features already computed (n, d)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise MetricError(f"Fréchet statistics need at least 2 feature vectors (n, d), got shape {features.shape}")
    return FeatureStats(np.mean(features, axis=0), np.cov(features, rowvar=False))


def as_uint8_images(images: Tensor, what: str) -> Tensor:
    """(n, C, H, W) pictures as the uint8 pixels a PNG of them holds: floats in [−1, 1] go
    through ``to_uint8``, uint8 stays; C must be 1 (grey) or 3 (RGB)."""
    from ebmkit.data.images import to_uint8

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise MetricError(f"{what} needs images shaped (n, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    return images.cpu() if images.dtype == torch.uint8 else to_uint8(images)


@contextlib.contextmanager
def quiet_stdout():
    """pytorch-fid prints notices (a singular covariance, a batch larger than the data) on
    stdout; they belong on stderr so that ``ebmkit eval --json`` prints only JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` of two statistics of the same width."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise MetricError(f"Fréchet distance of features of different widths: {a.mu.shape[0]} and {b.mu.shape[0]} "
                          "(reference statistics from another feature extractor?)")
    with quiet_stdout(), warnings.catch_warnings():
        # scipy ≥ 1.16 deprecates the `disp` argument pytorch-fid passes; nothing for a user to do
        warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)
        return float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))


def load_stats(path: str | Path) -> FeatureStats:
    """Statistics saved by pytorch-fid (``--save-stats``) or by ebmkit: an .npz with mu and sigma."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MetricError(f"statistics file '{path}' not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except KeyError:
        raise MetricError(f"'{path}' holds no 'mu' and 'sigma' arrays (pytorch-fid's statistics format)") from None
    except (OSError, ValueError) as exc:
        raise MetricError(f"'{path}' is not a readable .npz file: {exc}") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise MetricError(f"'{path}': mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}")
    return FeatureStats(mu, sigma)


def save_stats(stats: FeatureStats, path: Path, **extra) -> None:
    """Write pytorch-fid's format atomically (a crash never leaves half a cache file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, mu=stats.mu, sigma=stats.sigma, **{k: np.asarray(v) for k, v in extra.items()})
    os.replace(tmp, path)


def cache_root() -> Path:
    """Where ebmkit keeps computed files: ``$EBMKIT_CACHE``, else ``$XDG_CACHE_HOME/ebmkit``
    (``~/.cache/ebmkit``)."""
    if os.environ.get("EBMKIT_CACHE"):
        return Path(os.environ["EBMKIT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ebmkit"


def cached_stats(folder: Path, key: dict, compute: Callable[[], FeatureStats]) -> FeatureStats:
    """Statistics from ``folder/<name>-<hash of key>.npz``, computed and saved on a miss.

    ``key`` must name everything the statistics depend on (the data set spec, the number of
    images, the feature extractor's weights); it is stored in the file too, for a reader.
    """
    text = json.dumps(key, sort_keys=True)
    name = str(key.get("data", {}).get("name", "stats")) if isinstance(key.get("data"), dict) else "stats"
    path = Path(folder) / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            return load_stats(path)
        except MetricError:
            pass  # a damaged cache file is recomputed, never trusted
    stats = compute()
    save_stats(stats, path, key=text)
    return stats
