"""Train a recipe from Python on a 2D set, then plot what it learned: the density
exp(−E(x, 0)) / Z on a grid, beside the data and the model's samples.

    python examples/train_2d_density.py                          # ddaebm on 8gaussians, about a minute on a CPU
    python examples/train_2d_density.py --recipe cdrl --data checkerboard --steps 1000
    python examples/train_2d_density.py --fast                   # seconds: a smoke test, barely trained

Writes the run to --out (default runs/train_2d_density) and the picture to OUT/learned.png.
matplotlib is one of ebmkit's own dependencies.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no window needed
import matplotlib.pyplot as plt
import torch

from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.metrics import energy_auc


def density_on_grid(model, box, resolution):
    """exp(−E(x, 0)) normalised over a resolution² grid on box²: in 2D, Z is a sum over cells."""
    lo, hi = box
    axis = torch.linspace(lo, hi, resolution)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        log_p = -model.data_energy(grid)  # lower energy = more probable
    return torch.softmax(log_p, dim=0).reshape(resolution, resolution)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="ddaebm", help="a 2D preset: drl, cdrl, ddaebm, dxmi (see `ebmkit list recipes`)")
    parser.add_argument("--data", default="8gaussians", help="a 2D set: 8gaussians, checkerboard, pinwheel, ...")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("runs/train_2d_density"))
    parser.add_argument("--fast", action="store_true", help="a few seconds: 40 steps, small pictures")
    args = parser.parse_args()

    steps, n, resolution = (40, 500, 64) if args.fast else (args.steps, 5000, 200)
    recipe = Recipe.from_name(args.recipe).override({"data": args.data, "train.steps": steps})
    # overwrite: an example's run directory is scratch; `ebmkit train` would refuse to clobber it
    model = recipe.fit(args.out, progress=not args.fast, overwrite=True)

    dataset = DATASETS.build(recipe.data)
    data = dataset.sample(n, generator=torch.Generator().manual_seed(1))
    samples = model.generate(n, generator=torch.Generator().manual_seed(2))
    density = density_on_grid(model, dataset.box, resolution)

    lo, hi = dataset.box
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    axes[0].scatter(data[:, 0], data[:, 1], s=1, alpha=0.4)
    axes[0].set_title(f"data: {args.data}")
    axes[1].imshow(density, origin="lower", extent=(lo, hi, lo, hi), cmap="viridis")
    axes[1].set_title("exp(−E(x, 0)) / Z")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
    axes[2].set_title(f"{recipe.name}: samples after {steps} steps")
    for ax in axes:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(args.out / "learned.png", dpi=80)
    plt.close(fig)

    # DxMI's energy AUC: held-out data against uniform noise on the box, scored by −E (0.5 = chance)
    auc = energy_auc(model.data_energy, data, dataset.box, generator=torch.Generator().manual_seed(3))
    print(f"energy AUC {auc:.3f} (data vs uniform noise; 0.5 is chance)")
    print(f"wrote {args.out / 'learned.png'}")


if __name__ == "__main__":
    main()
