"""Every recipe's Fashion-MNIST preset on a CPU (issue: images, every recipe trains on images).

Trains each `<recipe>_fmnist` preset, one thread each, two at a time (the 2-core CPU machine).
Each preset scores itself during training with FD-FMNIST (500 samples of the EMA model against
the Fashion-MNIST test set's statistics, `train.eval_metric`), so the table is read off each
run's stats.jsonl: the first and the last periodic value and the fall between them. Before
training, the untrained model is scored the same way (`fd_before_training.untrained`), and the
fall from it to the last value is the second fall. Each run's final sample grid and its grids along the
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

RECIPES = ["drl", "cdrl", "ddaebm", "dxmi", "pcd", "dsm"]
DEFAULT_OUT = Path(__file__).with_name("fmnist")


def run(name: str, out: Path, steps: int | None) -> dict:
    import torch

    from ebmkit import Recipe

    torch.set_num_threads(1)
    recipe = Recipe.from_name(f"{name}_fmnist").override({"train.threads": 1,
                                                          **({"train.steps": steps} if steps else {})})
    from fd_before_training import untrained

    before = round(untrained(recipe), 1)
    run_dir = out / "runs" / name
    start, cpu = time.perf_counter(), time.process_time()
    recipe.fit(run_dir, progress=False, overwrite=True)
    # CPU seconds too: beside other jobs the wall clock overstates what the run costs on one thread
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
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
            "cpu_seconds": round(cpu_seconds),
            "fd_before": before, "fd_first": first, "fd_last": last, "fall": round(1 - last / first, 3),
            "best": min(v for _, v in curve), "curve": curve}


def table(rows: list[dict], header: str) -> str:
    lines = [f"# Fashion-MNIST presets on a CPU\n\n{header}\n",
             "| preset | command | iterations (+ pretraining) | wall time of the run (CPU time) | FD-FMNIST before training "
             "| first → last | fall | fall from before training | best | along the way | measured |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pre = f" (+ {r['pretrain_iterations']})" if r["pretrain_iterations"] else ""
        along = ", ".join(f"{s}: {v}" for s, v in r["curve"])
        before = r.get("fd_before")
        cpu = f" ({r['cpu_seconds'] / 60:.1f} min)" if "cpu_seconds" in r else ""
        from_before = f"{100 * (1 - r['fd_last'] / before):.0f}%" if before else "—"
        measured = r.get("measured", "") + (f"; before training: {r['before_measured']}" if "before_measured" in r else "")
        lines.append(f"| `{r['recipe']}` | `{r['command']}` | {r['iterations']}{pre} | "
                     f"{r['train_seconds'] / 60:.1f} min{cpu} | {before if before is not None else 'not measured'} | "
                     f"{r['fd_first']} → {r['fd_last']} | {100 * r['fall']:.0f}% | "
                     f"{from_before} | "
                     f"{r['best']} | {along} | {measured} |")
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
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        fresh = list(pool.map(run, args.recipes, [args.out] * len(args.recipes), [args.steps] * len(args.recipes)))
    shutil.rmtree(args.out / "runs", ignore_errors=True)  # weights and checkpoints: not for git
    # a run of some recipes replaces their rows and keeps the others' (each row says its own command)
    kept = recorded(args.out)
    when = (f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {os.cpu_count()} cores, "
            f"{args.jobs} run(s) at a time")
    kept.update({r["recipe"]: {**r, "measured": when} for r in fresh})
    print(write(kept, args.out))


def recorded(out: Path) -> dict[str, dict]:
    record = out.with_suffix(".json")
    return {r["recipe"]: r for r in json.loads(record.read_text())} if record.exists() else {}


def write(kept: dict[str, dict], out: Path) -> str:
    import ebmkit

    rows = [kept[f"{n}_fmnist"] for n in RECIPES if f"{n}_fmnist" in kept]
    header = (f"`python benchmarks/fmnist.py --jobs N [--recipes ...]`, ebmkit {ebmkit.__version__}, "
              f"{platform.processor() or platform.machine()} CPU, one thread per run; each row says when and on "
              "how many cores it was measured. Each preset scores itself during training: FD-FMNIST of 500 EMA samples "
              "against the Fashion-MNIST test set (`train.eval_metric: fd_fmnist`; 500 real training images score "
              "about 6.7, uniform noise about 735). *Before training* is the untrained model scored the same way "
              "(`benchmarks/fd_before_training.py`).")
    text = table(rows, header)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return text


def record_before(scores: dict[str, float], date: str, out: Path = DEFAULT_OUT) -> None:
    """Write untrained scores measured apart from a training run into the recorded rows."""
    kept = recorded(out)
    for name, score in scores.items():
        if name in kept:
            kept[name].update(fd_before=score, before_measured=date)
    write(kept, out)

if __name__ == "__main__":
    main()
