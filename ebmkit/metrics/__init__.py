"""Sample and density quality: one function per metric, torch only, float64 inside; for images
FID, through pytorch-fid."""

from ebmkit.metrics.auc import energy_auc, roc_auc
from ebmkit.metrics.likelihood import grid_log_likelihood, true_log_likelihood
from ebmkit.metrics.discrepancy import mmd
from ebmkit.metrics.fid import FID, fid
from ebmkit.metrics.frechet import MetricError
from ebmkit.metrics.wasserstein import sliced_wasserstein

__all__ = ["sliced_wasserstein", "mmd", "roc_auc", "energy_auc", "grid_log_likelihood", "true_log_likelihood",
           "FID", "fid", "MetricError"]
