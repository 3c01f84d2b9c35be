"""Any data, no retuning: every 2D preset on the toy sets at their own scale, ×0.01, ×100, and
stretched along one axis.

The scaled and stretched sets are `.npy` files of 20,000 points drawn from the toy sets (the
user's path: a file is standardised per axis before training, and everything is mapped back).
Every cell is one seed at the preset's default budget, trained and scored by `ebmkit bench toy`;
DRL and CDRL on 25gaussians get three seeds. SW is divided by the data's overall standard
deviation σ so that rows of different scales compare; the floor is two fresh draws of the same
data, and the toy table's SW/σ (benchmarks/toy, benchmarks/hybrids) stands beside ours.

    python benchmarks/scale.py --jobs 2            # about 3 hours on 2 cores; writes scale.md/.json
    python benchmarks/scale.py --jobs 2 --out DIR  # runs and data files go to DIR (default bench-scale/)

Cells already finished in --out are read back (as `ebmkit bench toy` does), so the table can be
built over several calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
PRESETS = ["drl", "cdrl", "ddaebm", "dxmi", "drl_vp", "cdrl_vp"]
SETS = ["8gaussians", "25gaussians", "checkerboard", "pinwheel", "swissroll"]
SCALES = {"x0.01": 0.01, "x100": 100.0}
STRETCHED = ("8gaussians", 0, 20.0)  # the set, the axis and the factor of the anisotropic row
POINTS = 20_000


def write_sets(folder: Path) -> dict[str, str]:
    """The scaled and stretched sets as .npy files; returns {label: path}."""
    from ebmkit.data import DATASETS

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, name in enumerate(SETS):
        x = DATASETS.build(name).sample(POINTS, generator=torch.Generator().manual_seed(7 + i)).double().numpy()
        for suffix, factor in SCALES.items():
            files[f"{name}_{suffix}"] = x * factor
    name, axis, factor = STRETCHED
    x = DATASETS.build(name).sample(POINTS, generator=torch.Generator().manual_seed(99)).double().numpy()
    x[:, axis] *= factor
    files[f"{name}_axis{axis}x{factor:g}"] = x
    paths = {}
    for label, array in files.items():
        path = folder / f"{label}.npy"
        np.save(path, array)
        paths[label] = str(path)
    return paths


def toy_table() -> dict[tuple[str, str], float]:
    """(recipe, set) → SW/σ of the recorded toy tables (benchmarks/toy, benchmarks/hybrids)."""
    from ebmkit.bench import data_std
    from ebmkit.data import DATASETS
    from ebmkit.recipes.base import EvalConfig

    config = EvalConfig()
    stds = {name: data_std(DATASETS.build(name), config.n_samples, config.seed + 1) for name in SETS}
    out = {}
    for table in (HERE / "toy" / "toy.json", HERE / "hybrids" / "toy.json"):
        for cell in json.loads(table.read_text())["summary"]:
            if cell["data"] in stds and "sw" in cell:
                out[cell["recipe"], cell["data"]] = cell["sw"]["mean"] / stds[cell["data"]]
    return out


def render(summary: list[dict], references: list[dict], runs: list[dict], header: dict) -> str:
    cells = {(c["recipe"], c["data"]): c for c in summary}
    floors = {r["data"]: r["sw_per_std"] for r in references}
    recorded = toy_table()

    def value(recipe, data):
        c = cells.get((recipe, data))
        if c is None:
            return "—"
        if c["diverged"]:
            return f"**diverged** ({c['diverged']}/{c['diverged'] + c['seeds']})"
        return f"{c['sw_per_std']['mean']:.3f}"

    lines = ["# Any data, no retuning: every 2D preset at three scales and stretched", "",
             f"`{header['command']}`", "", f"{header['date']} · {header['machine']} · {header['versions']}", "",
             "SW/σ: sliced Wasserstein (10k generated vs 10k fresh points, in the data's own units) over the data's "
             "overall standard deviation σ = √(mean per-axis variance); lower is better. One seed per cell at the "
             "preset's default budget. ×1 is the built-in set, used as given; ×0.01, ×100 and the stretched set are "
             f".npy files of {POINTS:,} points drawn from it, which training standardises per axis. *toy table*: the "
             "recorded 3-seed mean of benchmarks/RESULTS.md at ×1. *floor*: two fresh draws of the same data.", "",
             "| recipe | data | ×1 | ×0.01 | ×100 | toy table (×1) | floor ×1 | floor ×0.01 | floor ×100 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for recipe in PRESETS:
        for name in SETS:
            toy = recorded.get((recipe, name))
            lines.append(f"| {recipe} | {name} | {value(recipe, name)} | {value(recipe, f'{name}_x0.01')} | "
                         f"{value(recipe, f'{name}_x100')} | {'—' if toy is None else f'{toy:.3f}'} | "
                         f"{floors.get(name, float('nan')):.3f} | {floors.get(f'{name}_x0.01', float('nan')):.3f} | "
                         f"{floors.get(f'{name}_x100', float('nan')):.3f} |")
    name, axis, factor = STRETCHED
    label = f"{name}_axis{axis}x{factor:g}"
    lines += ["", f"Stretched: {name} with axis {axis} multiplied by {factor:g} (floor {floors.get(label, float('nan')):.3f}).",
              "", "| recipe | SW/σ |", "| --- | --- |"]
    lines += [f"| {recipe} | {value(recipe, label)} |" for recipe in PRESETS]
    lines += ["", "DRL and CDRL on 25gaussians, their presets, three seeds: the mean SW against 1.5× the floor "
                  "(the bar of the issue 'Any data, no silent failure').", "",
              "| recipe | SW, seeds 0, 1, 2 | mean | floor | 1.5 × floor |", "| --- | --- | --- | --- | --- |"]
    floor = next(r["sw"] for r in references if r["data"] == "25gaussians")
    for recipe in ("drl", "cdrl"):
        sws = [r["sw"] for r in sorted(runs, key=lambda r: r["seed"]) if r["recipe"] == recipe
               and r["data"] == "25gaussians" and "sw" in r]
        mean = sum(sws) / len(sws) if sws else float("nan")
        lines.append(f"| {recipe} | {', '.join(f'{v:.3f}' for v in sws)} | {mean:.3f} | {floor:.3f} | {1.5 * floor:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from ebmkit.bench import run_toy

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-scale"))
    parser.add_argument("--recipes", default=",".join(PRESETS), help="train only these presets' cells now (the "
                        "table is written when every preset's cells are done)")
    args = parser.parse_args(argv)
    recipes = [r for r in args.recipes.split(",") if r]
    paths = write_sets(args.out / "data")
    data = SETS + list(paths.values())
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    # the three-seed cells first, then every cell with one seed (seed 0 is read back, not retrained)
    three = [r for r in ("drl", "cdrl") if r in recipes]
    if three:
        run_toy(three, ["25gaussians"], 3, args.out, jobs=args.jobs, log=log)
    command = f"python benchmarks/scale.py --jobs {args.jobs}"
    run_toy(recipes, data, 1, args.out, jobs=args.jobs, log=log, command=command)
    if recipes != PRESETS:
        print(f"trained {', '.join(recipes)}; run again with every preset for the table", file=sys.stderr)
        return
    result = json.loads((args.out / "toy.json").read_text())
    runs = result["runs"] + _runs_of(args.out, ["drl", "cdrl"], "25gaussians", [1, 2])
    header = {k: result[k] for k in ("command", "date", "machine", "versions")}
    header["machine"] += f", {(time.perf_counter() - t0) / 3600:.1f} h"
    (HERE / "scale.md").write_text(render(result["summary"], result["references"], runs, header))
    (HERE / "scale.json").write_text(json.dumps({**header, "summary": result["summary"],
                                                 "references": result["references"], "runs": runs}, indent=1))
    print(f"wrote {HERE / 'scale.md'}", file=sys.stderr)


def _runs_of(out: Path, recipes: list[str], data: str, seeds: list[int]) -> list[dict]:
    """The rows of finished cells, read back from their cell.json."""
    rows = []
    for recipe in recipes:
        for seed in seeds:
            record = json.loads((out / "runs" / f"{recipe}-{data}-s{seed}" / "cell.json").read_text())
            rows.append(record["row"])
    return rows


if __name__ == "__main__":
    main()
