"""`ebmkit eval`: every metric of a trained model against fresh data, on fixed seeds."""

from __future__ import annotations

import torch

from ebmkit.metrics import energy_auc, grid_log_likelihood, mmd, sliced_wasserstein, true_log_likelihood


def generate_samples(model, n: int, seed: int) -> torch.Tensor:
    """The n samples `ebmkit eval` scores: `ebmkit sample -n N --seed SEED` draws the same."""
    return model.generate(n, generator=torch.Generator(model.device).manual_seed(seed)).cpu()


@torch.no_grad()
def evaluate(model, dataset, config, samples: torch.Tensor | None = None) -> dict[str, float]:
    """SW-2 and MMD of ``config.n_samples`` generated vs fresh points; energy AUC against
    uniform noise on the data's box; for 2D sets the exact grid log-likelihood of held-out data
    (and the true density's, where the data set knows it); and ``generation_evaluations``, the
    ∇ₓE evaluations per generated sample, where the sampler declares that number.

    Images are compared as flat vectors (SW, MMD and the AUC's uniform noise live in [−1, 1]^D);
    image-specific scores (FID, FD-FMNIST) are `image_metrics`'. ``samples``, when given, must
    be `generate_samples(model, config.n_samples, config.seed)`, already drawn by the caller.
    """
    device = model.device
    if samples is None:
        samples = generate_samples(model, config.n_samples, config.seed)
    samples = samples.reshape(len(samples), -1)
    data = dataset.sample(config.n_samples, generator=torch.Generator().manual_seed(config.seed + 1)).flatten(1)
    heldout = dataset.sample(config.n_samples, generator=torch.Generator().manual_seed(config.seed + 2)).flatten(1)

    def energy_fn(x):
        return model.data_energy(x.reshape(len(x), *model.shape).to(device)).cpu()

    out = {
        "sw": sliced_wasserstein(samples, data, n_projections=config.n_projections,
                                 generator=torch.Generator().manual_seed(config.seed + 3)),
        "mmd": mmd(samples, data),
        "energy_auc": energy_auc(energy_fn, heldout, dataset.box,
                                 generator=torch.Generator().manual_seed(config.seed + 4)),
        "samples_finite": float(torch.isfinite(samples).all()),
    }
    # a sampler whose generation costs a fixed number of ∇ₓE evaluations per sample says how many
    nfe = getattr(model.sampler, "generation_evaluations", None)
    if nfe is not None:
        out["generation_evaluations"] = int(nfe)
    if dataset.has_log_prob:
        out["true_energy_auc"] = energy_auc(lambda x: -dataset.log_prob(x), heldout, dataset.box,
                                            generator=torch.Generator().manual_seed(config.seed + 4))
    if dataset.dim == 2:
        out["grid_log_likelihood"] = grid_log_likelihood(lambda x: -energy_fn(x), heldout, dataset.box,
                                                         resolution=config.grid_resolution)
        if dataset.has_log_prob:
            out["true_log_likelihood"] = true_log_likelihood(dataset, heldout)
    return out


@torch.no_grad()
def image_metrics(samples: torch.Tensor, *, fid=None, fid_ref=None, fd_fmnist=None) -> dict[str, float]:
    """Scores of generated images (n, C, H, W) in [−1, 1]: "fid" against ``fid_ref`` with a
    loaded `ebmkit.metrics.fid.FID`, "fd_fmnist" with a loaded `ebmkit.metrics.fmnist.FDFMNIST`
    (each only when given)."""
    out = {}
    if fid is not None:
        out["fid"] = fid(samples, fid_ref)
    if fd_fmnist is not None:
        out["fd_fmnist"] = fd_fmnist(samples)
    return out
