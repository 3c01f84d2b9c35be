"""Swap one component of a recipe: DRL's Langevin sampler for CDRL's cooperative one.

DRL starts each level's Langevin chain at the noisier sample x_{t+1}. CDRL (Zhu et al., ICLR
2024) puts a learned initializer in front of the same chain: it proposes y⁰ from x_{t+1} and
learns to move its proposals towards where the K refinement steps end. Here the refinement
stage is DRL's own Langevin spec, so the initializer is the only difference: same schedule,
energy, divergence, data, steps and seed.

    python examples/swap_sampler.py                  # K = 15 Langevin steps, 300 iterations each: a minute or two on a CPU
    python examples/swap_sampler.py --data checkerboard --langevin-steps 5
    python examples/swap_sampler.py --fast           # seconds: a smoke test, barely trained

The same swap from the command line:

    ebmkit train --recipe drl --set 'sampler={"name": "cooperative", "refine": {"name": "langevin", "n_steps": 15}}'

Not every sampler fits every recipe; docs/assemble.md lists what is refused and why.
"""

import argparse
import json
from pathlib import Path

from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.evaluation import evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="8gaussians")
    parser.add_argument("--steps", type=int, default=300, help="training iterations of each run")
    parser.add_argument("--langevin-steps", type=int, default=15, help="K, Langevin steps per level (the preset's 30 is DRL's)")
    parser.add_argument("--out", type=Path, default=Path("runs/swap_sampler"))
    parser.add_argument("--fast", action="store_true", help="a few seconds: 20 iterations, K = 2, small evaluation")
    args = parser.parse_args()

    steps, k = (20, 2) if args.fast else (args.steps, args.langevin_steps)
    drl = Recipe.from_name("drl").override({"data": args.data, "train.steps": steps, "sampler.n_steps": k})
    # the whole sampler spec is replaced; its refine stage is DRL's Langevin, options and all
    cooperative = drl.override({"name": "drl_cooperative", "sampler": {"name": "cooperative", "refine": drl.sampler}})

    eval_config = drl.eval.model_copy(update={"n_samples": 500, "n_projections": 100, "grid_resolution": 64}
                                      if args.fast else {"n_samples": 5000})
    dataset = DATASETS.build(drl.data)
    print(f"{'sampler':<12} {'K':>3} {'ms/step':>8} {'SW':>7} {'energy AUC':>11} {'sampler params':>15}")
    for recipe in (drl, cooperative):
        run_dir = args.out / recipe.sampler["name"]
        model = recipe.fit(run_dir, progress=not args.fast, overwrite=True)  # scratch runs: overwrite
        last = json.loads((run_dir / "stats.jsonl").read_text().splitlines()[-1])  # time: training alone
        metrics = evaluate(model, dataset, eval_config)
        # the initializer is the sampler's own network, trained beside the energy by its own optimizer
        params = sum(p.numel() for p in model.sampler.parameters())
        print(f"{recipe.sampler['name']:<12} {k:>3} {1000 * last['time'] / last['step']:>8.1f} {metrics['sw']:>7.3f} "
              f"{metrics['energy_auc']:>11.3f} {params:>15}")
    print(f"true density's energy AUC {metrics['true_energy_auc']:.3f}; pictures: {args.out}/*/density.png")


if __name__ == "__main__":
    main()
