"""`ebmkit bench toy`: every named recipe on every named 2D set, on one footing.

Each (recipe, data set, seed) trains the recipe's preset (with ``--set`` changes applied to all)
into ``OUT/runs/RECIPE-DATA-sSEED`` and is scored by `ebmkit.evaluation.evaluate` on the
preset's evaluation seeds: sliced Wasserstein, MMD, energy AUC against uniform noise and the
exact grid log-likelihood, beside the true density's where the data set knows it. The cells
are mean ± std over seeds. A data set is a registered name or a 2D ``.npy``/``.csv`` file (its
cells are named by the file's stem). SW is also given divided by the data's overall standard
deviation σ = √(mean of the per-axis variances), so that sets of any scale compare, and each data
set gets a reference row: the same metrics between two fresh draws of the data (the floor no
model can beat, mean of three pairs). A run stopped by the divergence watch is a diverged cell,
not a number. Writes ``OUT/toy.md``, ``OUT/toy.json`` and ``OUT/toy.png`` (recipes × data sets:
the learned density and samples of seed 0).

A finished cell leaves ``cell.json`` in its run directory, and a later call with the same
``--out`` reads it back instead of training the cell again when the resolved recipe is the same
(``fresh=True`` retrains every cell). The full table is hours of CPU time: it can be built
over several calls, and an interruption costs only the cells that were running.
"""

from __future__ import annotations

import json
import math
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

METRICS = ("sw", "sw_per_std", "mmd", "energy_auc", "grid_log_likelihood")
FLOOR_PAIRS = 3  # pairs of fresh data draws averaged in a data set's reference row
REFERENCE = {"energy_auc": "true_energy_auc", "grid_log_likelihood": "true_log_likelihood"}
CELL = "cell.json"  # a finished cell: its resolved recipe and its row of the table


def data_label(data: str) -> str:
    """A data set's name in the table and run folders: its name, or a file's stem."""
    from ebmkit.data import data_spec_from_cli

    spec = data_spec_from_cli(data)
    return Path(spec["path"]).stem if isinstance(spec, dict) else spec


def recipe_for(name: str, data: str, seed: int, changes: dict):
    from ebmkit.data import data_spec_from_cli
    from ebmkit.recipes import Recipe

    return Recipe.from_name(name).override({"data": data_spec_from_cli(data), "train.seed": seed, "train.threads": 1,
                                            **changes})


def data_std(dataset, n: int, seed: int) -> float:
    """σ = √(mean over axes of the variance), on n points drawn with ``seed``."""
    import torch

    x = dataset.sample(n, generator=torch.Generator().manual_seed(seed)).flatten(1).double()
    return float(x.var(0, unbiased=True).mean().sqrt())


def reference(data: str, eval_config) -> dict:
    """The data-vs-data row: SW and MMD between two fresh draws of ``eval_config.n_samples``
    points (mean of FLOOR_PAIRS pairs), and the data's σ."""
    import torch

    from ebmkit.data import DATASETS, data_spec_from_cli
    from ebmkit.metrics import mmd, sliced_wasserstein

    dataset = DATASETS.build(data_spec_from_cli(data))
    n, seed, std = eval_config.n_samples, eval_config.seed, None
    sw, dist = [], []
    for pair in range(FLOOR_PAIRS):  # seeds apart from every model evaluation's (seed … seed + 4)
        base = seed + 100 + 10 * pair
        a = dataset.sample(n, generator=torch.Generator().manual_seed(base)).flatten(1)
        b = dataset.sample(n, generator=torch.Generator().manual_seed(base + 1)).flatten(1)
        sw.append(sliced_wasserstein(a, b, n_projections=eval_config.n_projections,
                                     generator=torch.Generator().manual_seed(base + 2)))
        dist.append(mmd(a, b))
    std = data_std(dataset, n, seed + 1)
    return {"data": data_label(data), "std": std, "sw": sum(sw) / len(sw), "sw_per_std": sum(sw) / len(sw) / std,
            "mmd": sum(dist) / len(dist)}


def finished_cell(out: Path, recipe) -> dict | None:
    """The row of a cell already trained and scored with exactly this recipe, else None. The
    recorded recipe is read by this ebmkit first, so that a cell recorded before an option was
    added (its default keeping the old behaviour) still counts."""
    path = out / CELL
    try:
        record = json.loads(path.read_text())
        then = type(recipe).create(**record["recipe"]).model_dump(mode="json")
        return record["row"] if then == recipe.model_dump(mode="json") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, torn by an interruption, or no longer a valid recipe: the cell is trained again


def train_and_score(name: str, data: str, seed: int, changes: dict, out: str, fresh: bool = False) -> dict:
    """One cell's run (in a worker process: one torch thread each).

    A cell whose run directory holds a ``cell.json`` for the same resolved recipe is read back,
    not trained again: an interrupted or extended benchmark redoes only what is missing.
    """
    import torch

    from ebmkit.data import DATASETS
    from ebmkit.evaluation import evaluate
    from ebmkit.training import DivergenceError, Trainer

    torch.set_num_threads(1)
    recipe = recipe_for(name, data, seed, changes)
    out = Path(out)
    row = None if fresh else finished_cell(out, recipe)
    if row is not None:
        return {**row, "reused": True}
    start = time.perf_counter()
    row = {"recipe": name, "data": data_label(data), "seed": seed}
    try:
        model = Trainer(recipe, out, overwrite=True, progress=False).fit()
    except DivergenceError as exc:  # the watch stopped it: the cell says so instead of scoring garbage
        row.update(seconds=time.perf_counter() - start, diverged=str(exc), diverged_at=exc.step)
    else:
        row["seconds"] = time.perf_counter() - start
        dataset = DATASETS.build(model.recipe.data)
        metrics = evaluate(model, dataset, model.recipe.eval)
        (out / "eval.json").write_text(json.dumps(metrics, indent=2))
        std = data_std(dataset, recipe.eval.n_samples, recipe.eval.seed + 1)
        row.update(metrics, sw_per_std=metrics["sw"] / std)
    tmp = out / (CELL + ".tmp")  # written whole, then renamed: a half-written record never counts
    tmp.write_text(json.dumps({"recipe": recipe.model_dump(mode="json"), "row": row}, indent=1))
    tmp.replace(out / CELL)
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """mean and std over seeds of each metric, per (recipe, data set), over the seeds that did
    not diverge; ``diverged`` counts the others."""
    cells = {}
    for row in rows:
        cells.setdefault((row["recipe"], row["data"]), []).append(row)
    summary = []
    for (recipe, data), group in cells.items():
        finished = [r for r in group if "diverged" not in r]
        cell = {"recipe": recipe, "data": data, "seeds": len(finished), "diverged": len(group) - len(finished)}
        for key in (*METRICS, *REFERENCE.values(), "seconds"):
            values = [r[key] for r in (finished if key != "seconds" else group) if key in r]
            if values:
                mean = sum(values) / len(values)
                std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
                cell[key] = {"mean": mean, "std": std}
        summary.append(cell)
    return summary


def _fmt(cell: dict, key: str, digits: int) -> str:
    if key not in cell:
        return "—"
    if not isinstance(cell[key], dict):  # a reference row: one number
        return f"{cell[key]:.{digits}f}"
    m = cell[key]
    # a chain that blew up (SW of 1e6) in exponent form: 1.2e+06, not a dozen digits
    spec = ".2e" if max(abs(m["mean"]), m["std"]) >= 1e4 else f".{digits}f"
    return f"{m['mean']:{spec}} ± {m['std']:{spec}}" if cell["seeds"] > 1 else f"{m['mean']:{spec}}"


def markdown(summary: list[dict], header: dict, references: list[dict] = ()) -> str:
    lines = ["# Toy benchmark: every recipe on every 2D set", "",
             f"`{header['command']}`", "",
             f"{header['date']} · {header['machine']} · {header['versions']}", "",
             "Mean ± std over seeds; SW and MMD are 10k generated vs 10k fresh points by default (lower is better), "
             "SW/σ is SW over the data's overall std; AUC: energy against uniform noise on the data's box, beside "
             "the true density's (higher is better); LL: exact grid log-likelihood of held-out data, beside the true "
             "density's. *data vs data*: two fresh draws of the data, the floor no model beats. *diverged*: runs the "
             "divergence watch stopped (they are not in the means).", "",
             "| recipe | data | SW | SW/σ | MMD | AUC | AUC (true) | LL | LL (true) | minutes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    floors = {r["data"]: r for r in references}
    for data in dict.fromkeys(c["data"] for c in summary):
        if data in floors:
            f = floors[data]
            lines.append(f"| *data vs data* | {data} | {_fmt(f, 'sw', 3)} | {_fmt(f, 'sw_per_std', 3)} | "
                         f"{_fmt(f, 'mmd', 4)} | — | — | — | — | — |")
        for c in (c for c in summary if c["data"] == data):
            minutes = f"{c['seconds']['mean'] / 60:.1f}"
            if not c["seeds"]:
                first = f"diverged ({c['diverged']}/{c['diverged']} seeds)"
                lines.append(f"| {c['recipe']} | {data} | {first} | — | — | — | {_fmt(c, 'true_energy_auc', 3)} | "
                             f"— | {_fmt(c, 'true_log_likelihood', 2)} | {minutes} |")
                continue
            note = f" (+{c['diverged']} diverged)" if c["diverged"] else ""
            lines.append(f"| {c['recipe']} | {data} | {_fmt(c, 'sw', 3)}{note} | {_fmt(c, 'sw_per_std', 3)} | "
                         f"{_fmt(c, 'mmd', 4)} | {_fmt(c, 'energy_auc', 3)} | {_fmt(c, 'true_energy_auc', 3)} | "
                         f"{_fmt(c, 'grid_log_likelihood', 2)} | {_fmt(c, 'true_log_likelihood', 2)} | {minutes} |")
    return "\n".join(lines) + "\n"


def picture(out: Path, recipes: list[str], datasets: list[str]) -> Path:
    """The density pictures of seed 0 side by side: one row per recipe, one column per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(recipes), len(datasets), figsize=(4 * len(datasets), 2.2 * len(recipes)),
                             squeeze=False)
    for i, recipe in enumerate(recipes):
        for j, data in enumerate(datasets):
            ax = axes[i][j]
            ax.axis("off")
            png = out / "runs" / f"{recipe}-{data_label(data)}-s0" / "density.png"
            if png.is_file():
                ax.imshow(plt.imread(png))
            ax.set_title(f"{recipe} · {data_label(data)}", fontsize=9)
    fig.tight_layout()
    path = out / "toy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_toy(recipes: list[str], datasets: list[str], seeds: int, out: Path, changes: dict | None = None,
            jobs: int = 1, command: str = "", log=print, fresh: bool = False) -> list[dict]:
    """Train and score every cell, ``jobs`` at a time; write toy.md, toy.json and toy.png."""
    import torch

    from ebmkit._version import __version__

    changes = changes or {}
    for name in recipes:  # every recipe and option is checked before anything trains
        for data in datasets:
            recipe_for(name, data, 0, changes)
    out = Path(out)
    cells = [(r, d, s) for r in recipes for d in datasets for s in range(seeds)]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_and_score, r, d, s, changes, str(out / "runs" / f"{r}-{data_label(d)}-s{s}"),
                               fresh) for r, d, s in cells]
        for future in futures:
            rows.append(future.result())
            row = rows[-1]
            done = "from its earlier run" if row.pop("reused", False) else f"in {row['seconds'] / 60:.1f} min"
            if "diverged" in row:
                log(f"{row['recipe']} · {row['data']} · seed {row['seed']}: diverged at step {row['diverged_at']} "
                    f"{done}: {row['diverged']}")
            else:
                log(f"{row['recipe']} · {row['data']} · seed {row['seed']}: SW {row['sw']:.3f}, "
                    f"AUC {row['energy_auc']:.3f} {done}")
    summary = summarize(rows)
    eval_config = recipe_for(recipes[0], datasets[0], 0, changes).eval
    references = [reference(data, eval_config) for data in datasets]
    header = {"command": command, "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {jobs} job(s) of one torch thread",
              "versions": f"ebmkit {__version__}, torch {torch.__version__}, python {platform.python_version()}"}
    (out / "toy.json").write_text(json.dumps({**header, "summary": summary, "references": references, "runs": rows},
                                             indent=1))
    (out / "toy.md").write_text(markdown(summary, header, references))
    picture(out, recipes, datasets)
    return summary
