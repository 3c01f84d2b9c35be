"""FD-FMNIST of a Fashion-MNIST preset before its first training step, and after its
sampler's pretraining where it has one (`train.pretrain_steps`).

benchmarks/fmnist.md measures each preset's fall from its first in-training evaluation. This
gives the two points before it: what the untrained model scores, and what the pretrained
sampler scores before any joint step. The training loop's own evaluation is used (EMA model,
the validation seeds, 500 samples), so the numbers compare with fmnist.md's.

    python benchmarks/fd_before_training.py drl_fmnist cdrl_fmnist ...
    python benchmarks/fd_before_training.py --record drl_fmnist ...  # also into fmnist.md's rows

`benchmarks/fmnist.py` scores the untrained model the same way (`untrained`) before each run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from ebmkit import Recipe
from ebmkit.training.trainer import Trainer


def untrained(recipe: Recipe) -> float:
    """FD-FMNIST of ``recipe``'s model before its first step (and before any pretraining)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(recipe, tmp)
        return trainer.evaluate(recipe.train.eval_samples)


def _trainer(recipe: Recipe, tmp: str) -> Trainer:
    trainer = Trainer(recipe, run_dir=f"{tmp}/run", progress=False)
    trainer._setup()  # the model, EMA, data and metric exactly as `fit` builds them
    trainer.run_dir.mkdir(parents=True)
    return trainer


def before_training(name: str) -> dict:
    recipe = Recipe.from_name(name)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(recipe, tmp)
        t0 = time.perf_counter()
        row = {"recipe": name, "untrained": trainer.evaluate(recipe.train.eval_samples)}
        if recipe.train.pretrain_steps:
            trainer._pretrain()  # also copies the pretrained sampler into the EMA
            row["after_pretraining"] = trainer.evaluate(recipe.train.eval_samples)
        row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="score only the untrained models, and write each "
                        "into its row of benchmarks/fmnist.md/.json (column 'before training')")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.record:
        import fmnist  # the sibling script: its table

        scores = {name: round(untrained(Recipe.from_name(name)), 1) for name in args.recipes}
        print(json.dumps(scores), flush=True)
        fmnist.record_before(scores, time.strftime("%Y-%m-%d"))
        return
    for name in args.recipes:
        print(json.dumps(before_training(name)), flush=True)


if __name__ == "__main__":
    main()
