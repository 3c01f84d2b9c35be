"""CDRL against DRL at equal wall time on the same 2D data (issue: the cooperative initializer's point).

Each recipe keeps its preset; only train.steps changes, set so that training takes the same
number of seconds: a short calibration measures the seconds per iteration, then the preset's
own learning-rate schedule runs over that many iterations. Both are scored by SW-2 (10k vs 10k,
1000 projections) and the exact grid log-likelihood, on the same evaluation seeds.

    python benchmarks/cdrl_vs_drl.py --seconds 150 --data checkerboard 8gaussians

writes benchmarks/cdrl_vs_drl.md (a Markdown table) and .json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import ebmkit
from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.evaluation import evaluate
from ebmkit.training import Trainer


def seconds_per_iteration(recipe: Recipe, n: int = 30) -> float:
    trainer = Trainer(recipe.override({"train.steps": n}), Path(tempfile.mkdtemp()) / "calib", progress=False)
    trainer._setup()
    for _ in range(5):  # warm-up
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(n):
        trainer.train_step()
    return (time.perf_counter() - start) / n


def gradient_evaluations_per_sample(recipe: Recipe) -> int:
    """Energy-gradient evaluations to generate one sample: T levels × K Langevin steps."""
    T = ebmkit.registry.SCHEDULES.build(recipe.schedule).num_levels
    sampler = recipe.sampler
    K = sampler["refine"]["n_steps"] if sampler["name"] == "cooperative" else sampler["n_steps"]
    return T * K


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0, help="training wall time per recipe and data set")
    ap.add_argument("--data", nargs="+", default=["checkerboard", "8gaussians"])
    ap.add_argument("--recipes", nargs="+", default=["drl", "cdrl"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("cdrl_vs_drl"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for data in args.data:
        for name in args.recipes:
            base = Recipe.from_name(name).override({"data": data, "train.threads": args.threads})
            per_it = seconds_per_iteration(base)
            steps = max(1, int(args.seconds / per_it))
            recipe = base.override({"train.steps": steps})
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                model = recipe.fit(Path(tmp) / "run", progress=False)
                seconds = time.perf_counter() - start
            metrics = evaluate(model, DATASETS.build(recipe.data), recipe.eval)
            row = {"data": data, "recipe": name, "iterations": steps, "train_seconds": round(seconds, 1),
                   "ms_per_iteration": round(1000 * per_it, 1), "grad_evals_per_sample": gradient_evaluations_per_sample(recipe),
                   **{k: round(v, 4) for k, v in metrics.items()}}
            print(json.dumps(row), flush=True)
            rows.append(row)

    header = (f"CDRL vs DRL at equal wall time ({args.seconds:.0f} s of training each, {args.threads} thread(s)); "
              f"ebmkit {ebmkit.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
              f"{time.strftime('%Y-%m-%d')}")
    cols = ["data", "recipe", "iterations", "train_seconds", "grad_evals_per_sample", "sw", "grid_log_likelihood",
            "true_log_likelihood", "energy_auc", "true_energy_auc"]
    lines = [f"# {header}", "", "Command: `python benchmarks/cdrl_vs_drl.py " +
             f"--seconds {args.seconds:g} --data {' '.join(args.data)} --threads {args.threads}`", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
