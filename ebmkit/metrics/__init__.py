"""Sample and density quality: one function per metric, torch only, float64 inside; for images
the Fréchet distances FID (pytorch-fid's Inception) and FD-FMNIST (a Fashion-MNIST classifier)."""

from ebmkit.metrics.auc import energy_auc, roc_auc
from ebmkit.metrics.likelihood import grid_log_likelihood, true_log_likelihood
from ebmkit.metrics.discrepancy import mmd
from ebmkit.metrics.fid import FID, fid
from ebmkit.metrics.fmnist import FDFMNIST, fd_fmnist
from ebmkit.metrics.frechet import MetricError
from ebmkit.metrics.wasserstein import sliced_wasserstein

__all__ = ["sliced_wasserstein", "mmd", "roc_auc", "energy_auc", "grid_log_likelihood", "true_log_likelihood",
           "FID", "fid", "FDFMNIST", "fd_fmnist", "MetricError"]
