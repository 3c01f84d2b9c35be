"""Pictures of a run: for 2D data the learned density exp(−E(·, 0)) beside data and samples;
for images a grid of samples."""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def density_grid(model, box: tuple[float, float], resolution: int = 200) -> torch.Tensor:
    """Normalised density of the model's clean-data energy on a resolution² grid over box²."""
    lo, hi = box
    axis = torch.linspace(lo, hi, resolution)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([xx.flatten(), yy.flatten()], 1).to(model.device)
    log_p = -torch.cat([model.data_energy(chunk) for chunk in points.split(8192)]).double().cpu()
    p = torch.softmax(log_p, 0)
    return p.reshape(resolution, resolution)


def density_figure(model, data: torch.Tensor, samples: torch.Tensor, box, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = box
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    bins = torch.linspace(lo, hi, 121).numpy()
    axes[0].hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=[bins, bins], cmap="viridis")
    axes[0].set_title("data")
    axes[1].imshow(density_grid(model, box).numpy(), origin="lower", extent=(lo, hi, lo, hi), cmap="viridis")
    axes[1].set_title("density exp(−E(x, 0)) / Z")
    axes[2].hist2d(samples[:, 0].clamp(lo, hi).numpy(), samples[:, 1].clamp(lo, hi).numpy(),
                   bins=[bins, bins], cmap="viridis")
    axes[2].set_title("samples")
    for ax in axes:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_image_grid(x: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    """Images in [−1, 1], shaped (n, C, H, W), as one PNG grid (torchvision lays it out)."""
    import math

    from torchvision.utils import make_grid
    from PIL import Image

    from ebmkit.data.images import to_uint8

    nrow = nrow or max(1, math.isqrt(len(x)))
    grid = make_grid(to_uint8(x), nrow=nrow, padding=2, pad_value=255)  # uint8 (C, H', W')
    array = grid.permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)


def save_image_files(x: torch.Tensor, folder: Path) -> list[Path]:
    """Images in [−1, 1], shaped (n, C, H, W), as one PNG each: folder/000000.png, ... (grey
    when C = 1, RGB when C = 3). The folder is created; one that already holds PNGs is refused,
    so that a folder handed to FID never mixes two sets of samples."""
    from PIL import Image

    from ebmkit.data.images import to_uint8

    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"save_image_files: images must be (n, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"'{folder}' exists and is not a folder")
    if folder.is_dir() and any(folder.glob("*.png")):
        raise FileExistsError(f"'{folder}' already holds PNG files; write the samples to an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(x).permute(0, 2, 3, 1).numpy()  # (n, H, W, C)
    width = max(6, len(str(len(x) - 1)))
    paths = []
    for i, array in enumerate(pixels):
        path = folder / f"{i:0{width}d}.png"
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)
        paths.append(path)
    return paths
