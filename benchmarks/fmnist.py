"""Every recipe's Fashion-MNIST preset on a CPU (issue: images, every recipe trains on images).

Trains `drl_fmnist`, `cdrl_fmnist`, `ddaebm_fmnist` and `dxmi_fmnist` with their presets, one
thread each, two at a time (the 2-core CPU machine). Each preset scores itself during training
with FD-FMNIST (500 samples of the EMA model against the Fashion-MNIST test set's statistics,
`train.eval_metric`), so the table is read off each run's stats.jsonl: the first and the last
periodic value and the fall between them. Each run's final sample grid and its grids along the
way are copied to benchmarks/fmnist/<recipe>/.

    python benchmarks/fmnist.py --jobs 2 [--recipes drl ddaebm]

writes benchmarks/fmnist.md (a Markdown table) and .json; the rows of recipes not run are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RECIPES = ["drl", "cdrl", "ddaebm", "dxmi"]


def run(name: str, out: Path, steps: int | None) -> dict:
    import torch

    from ebmkit import Recipe

    torch.set_num_threads(1)
    recipe = Recipe.from_name(f"{name}_fmnist").override({"train.threads": 1,
                                                          **({"train.steps": steps} if steps else {})})
    run_dir = out / "runs" / name
    start = time.perf_counter()
    recipe.fit(run_dir, progress=False, overwrite=True)
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    curve = [(r["step"], round(r["fd_fmnist"], 1)) for r in rows if "fd_fmnist" in r]
    pictures = out / name
    shutil.rmtree(pictures, ignore_errors=True)
    shutil.copytree(run_dir / "samples", pictures)
    shutil.copyfile(run_dir / "samples.png", pictures / "final.png")
    first, last = curve[0][1], curve[-1][1]
    command = f"ebmkit train --recipe {name}_fmnist --set train.threads=1" + (f" --steps {steps}" if steps else "")
    return {"recipe": f"{name}_fmnist", "command": command, "iterations": recipe.train.steps,
            "pretrain_iterations": recipe.train.pretrain_steps, "train_seconds": round(seconds),
            "fd_first": first, "fd_last": last, "fall": round(1 - last / first, 3),
            "best": min(v for _, v in curve), "curve": curve}


def table(rows: list[dict], header: str) -> str:
    lines = [f"# Fashion-MNIST presets on a CPU\n\n{header}\n",
             "| preset | command | iterations (+ pretraining) | wall time of the loop | FD-FMNIST first → last | fall "
             "| best | along the way | measured |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pre = f" (+ {r['pretrain_iterations']})" if r["pretrain_iterations"] else ""
        along = ", ".join(f"{s}: {v}" for s, v in r["curve"])
        lines.append(f"| `{r['recipe']}` | `{r['command']}` | {r['iterations']}{pre} | "
                     f"{r['train_seconds'] / 60:.1f} min | {r['fd_first']} → {r['fd_last']} | "
                     f"{100 * r['fall']:.0f}% | {r['best']} | {along} | {r.get('measured', '')} |")
    lines.append("\nSample grids: `benchmarks/fmnist/<recipe>/step_N.png` at each evaluation (64 samples, fixed "
                 "seed), `final.png` at the end (the `samples.png` of the run). The first evaluations of "
                 "`dxmi_fmnist` and `cdrl_fmnist` come after their samplers' pretraining (DDPM's ε-loss; "
                 "the initializer's regression onto real pairs), so their falls measure the joint training "
                 "against the pretrained sampler.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    ap.add_argument("--steps", type=int, default=None, help="override the presets' train.steps")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("fmnist"))
    args = ap.parse_args()

    import ebmkit
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        fresh = list(pool.map(run, args.recipes, [args.out] * len(args.recipes), [args.steps] * len(args.recipes)))
    shutil.rmtree(args.out / "runs", ignore_errors=True)  # weights and checkpoints: not for git
    # a run of some recipes replaces their rows and keeps the others' (each row says its own command)
    record = args.out.with_suffix(".json")
    kept = {r["recipe"]: r for r in json.loads(record.read_text())} if record.exists() else {}
    when = (f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {os.cpu_count()} cores, "
            f"{args.jobs} run(s) at a time")
    kept.update({r["recipe"]: {**r, "measured": when} for r in fresh})
    rows = [kept[f"{n}_fmnist"] for n in RECIPES if f"{n}_fmnist" in kept]
    header = (f"`python benchmarks/fmnist.py --jobs N [--recipes ...]`, ebmkit {ebmkit.__version__}, "
              f"{platform.processor() or platform.machine()} CPU, one thread per run; each row says when and on "
              "how many cores it was measured. Each preset scores itself during training: FD-FMNIST of 500 EMA samples "
              "against the Fashion-MNIST test set (`train.eval_metric: fd_fmnist`; 500 real training images score "
              "about 6.7, uniform noise about 735).")
    text = table(rows, header)
    args.out.with_suffix(".md").write_text(text)
    record.write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
