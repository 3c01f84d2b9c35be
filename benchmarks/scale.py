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
    python benchmarks/scale.py --table-only        # the table of the cells finished so far

Cells already finished in --out are read back (as `ebmkit bench toy` does), and every finished
cell's record is kept in scale.json and written back into --out, so the table can be built over
several calls, on several machines. scale.json writes --out as `$OUT`, so it names no folder of
the machine that wrote it and any --out reads it back.
"""

from __future__ import annotations

import argparse
import json
import platform
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
        path, tmp = folder / f"{label}.npy", folder / f"{label}.tmp.npy"
        np.save(tmp, array)
        tmp.replace(path)  # whole or not at all: a cell training on it meanwhile never reads half a file
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


def _recorded(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1e} (blew up)"  # the toy table's 25gaussians before the cap


def render(summary: list[dict], references: list[dict], runs: list[dict], header: dict) -> str:
    cells = {(c["recipe"], c["data"]): c for c in summary}
    floors = {r["data"]: r["sw_per_std"] for r in references}
    recorded = toy_table()

    def value(recipe, data):
        c = cells.get((recipe, data))
        if c is None:
            return "not run yet"
        if c["diverged"]:
            return f"**diverged** ({c['diverged']}/{c['diverged'] + c['seeds']})"
        return f"{c['sw_per_std']['mean']:.3f}"

    lines = ["# Any data, no retuning: every 2D preset at three scales and stretched", "",
             f"`{header['command']}`", "", f"{header['date']} · {header['machine']} · {header['versions']}", "",
             f"**{header['finished']} finished.** The table is built over several calls (finished cells are "
             "kept in scale.json and read back); a cell marked *not run yet* has not been trained.", "",
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
                         f"{value(recipe, f'{name}_x100')} | {_recorded(toy)} | "
                         f"{floors.get(name, float('nan')):.3f} | {floors.get(f'{name}_x0.01', float('nan')):.3f} | "
                         f"{floors.get(f'{name}_x100', float('nan')):.3f} |")
    name, axis, factor = STRETCHED
    label = f"{name}_axis{axis}x{factor:g}"
    lines += ["", f"Stretched: {name} with axis {axis} multiplied by {factor:g} (floor {floors.get(label, float('nan')):.3f}).",
              "", "| recipe | SW/σ |", "| --- | --- |"]
    lines += [f"| {recipe} | {value(recipe, label)} |" for recipe in PRESETS]
    lines += ["", "DRL and CDRL on 25gaussians, their presets, three seeds: the mean SW against 1.5× the floor "
                  "(the bar of the issue 'Any data, no silent failure').", "",
              "| recipe | SW by seed | mean | floor | 1.5 × floor |", "| --- | --- | --- | --- | --- |"]
    floor = next(r["sw"] for r in references if r["data"] == "25gaussians")
    for recipe in ("drl", "cdrl"):
        mine = sorted((r for r in runs if r["recipe"] == recipe and r["data"] == "25gaussians"), key=lambda r: r["seed"])
        by_seed = ", ".join(f"{r['seed']}: " + (f"{r['sw']:.3f}" if "sw" in r else "diverged") for r in mine)
        sws = [r["sw"] for r in mine if "sw" in r]
        mean = f"{sum(sws) / len(sws):.3f}" if len(sws) == len(mine) == 3 else "—"  # the bar is over three seeds
        lines.append(f"| {recipe} | {by_seed or 'not run yet'} | {mean} | {floor:.3f} | {1.5 * floor:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from ebmkit.bench import run_toy

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench-scale"))
    parser.add_argument("--recipes", default=",".join(PRESETS), help="train only these presets' cells now")
    parser.add_argument("--table-only", action="store_true", help="train nothing: write the table of the cells "
                        "finished so far")
    args = parser.parse_args(argv)
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = sorted(set(recipes) - set(PRESETS))
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; allowed: {', '.join(PRESETS)}")
    out = args.out.resolve()  # the recipes hold the sets' absolute paths: one --out, one set of cells
    paths = write_sets(out / "data")
    data = SETS + list(paths.values())
    restored = restore_cells(out)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if restored:
        log(f"{restored} finished cell(s) read back from {RECORD.name}")
    t0 = time.perf_counter()
    if not args.table_only:
        # the three-seed cells first, then every cell with one seed (seed 0 is read back, not retrained)
        three = [r for r in ("drl", "cdrl") if r in recipes]
        if three:
            run_toy(three, ["25gaussians"], 3, out, jobs=args.jobs, log=log)
        run_toy(recipes, data, 1, out, jobs=args.jobs, log=log)
    write_table(out, data, args.jobs, time.perf_counter() - t0)
    print(f"wrote {HERE / 'scale.md'}", file=sys.stderr)


RECORD = HERE / "scale.json"
OUT = "$OUT"  # stands for --out in scale.json: the recipes hold the sets' absolute paths under it


def expected_cells(data: list[str]) -> list[tuple[str, str, int]]:
    """Every (preset, data, seed) cell of the table: one seed each, three for DRL and CDRL on 25gaussians."""
    cells = [(r, d, 0) for r in PRESETS for d in data]
    return cells + [(r, "25gaussians", s) for r in ("drl", "cdrl") for s in (1, 2)]


def restore_cells(out: Path) -> int:
    """Write back the cell.json of cells recorded in scale.json that ``out`` lacks, so that the table
    can be built over several machines' calls; a cell whose recipe no longer resolves the same way
    (another ebmkit) is not matched by `ebmkit bench` and is trained again."""
    if not RECORD.is_file():
        return 0
    count = 0
    text = RECORD.read_text().replace(OUT, json.dumps(str(out))[1:-1])
    for name, record in json.loads(text).get("cells", {}).items():
        path = out / "runs" / name / "cell.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
            count += 1
    return count


def write_table(out: Path, data: list[str], jobs: int, seconds: float) -> None:
    """scale.md and scale.json from every finished cell in ``out``."""
    import ebmkit
    from ebmkit.bench import data_label, reference, summarize
    from ebmkit.recipes.base import EvalConfig

    cells, rows = {}, []
    for recipe, d, seed in expected_cells(data):
        name = f"{recipe}-{data_label(d)}-s{seed}"
        try:
            record = json.loads((out / "runs" / name / "cell.json").read_text())
        except (OSError, ValueError):
            continue  # not trained yet
        cells[name] = record
        rows.append(record["row"])
    total = len(expected_cells(data))
    references = [reference(d, EvalConfig()) for d in data]
    header = {"command": "python benchmarks/scale.py --jobs 2",
              "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {jobs} job(s) of one torch thread",
              "versions": f"ebmkit {ebmkit.__version__}, torch {torch.__version__}, python {platform.python_version()}",
              "finished": f"{len(rows)} of {total} cells"}
    one_seed = [r for r in rows if r["seed"] == 0]
    (HERE / "scale.md").write_text(render(summarize(one_seed), references, rows, header))
    text = json.dumps({**header, "summary": summarize(one_seed), "references": references, "runs": rows,
                       "cells": cells}, indent=1)
    RECORD.write_text(text.replace(json.dumps(str(out))[1:-1], OUT))


if __name__ == "__main__":
    main()
