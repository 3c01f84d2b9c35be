"""Time per training iteration and per generated sample, against the physical floor.

The floor of an iteration is the bare cost of the network passes it makes: one training
iteration is recorded (every call of every network: the energy's and the sampler's, with
its inputs), then each call is replayed alone as forward + backward (to the inputs and the
parameters) with no sampler arithmetic, optimizer, EMA or Python bookkeeping around it.
ratio = iteration / floor, so 1.00 means no overhead at all.

    python benchmarks/speed.py                      # the four 2D presets, eager and --compile
    python benchmarks/speed.py --recipes drl --no-compile --scaling
    python benchmarks/speed.py --images             # also the Fashion-MNIST presets' 28×28 networks

writes benchmarks/speed.md (tables) and speed.json. --scaling adds DRL's cost against data
dimension, batch size, number of levels T and Langevin steps K.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ebmkit
from ebmkit import Recipe
from ebmkit.training import Trainer


def build(recipe: Recipe) -> Trainer:
    trainer = Trainer(recipe, Path(tempfile.mkdtemp()) / "run", progress=False)
    trainer._setup()
    return trainer


def record_calls(trainer: Trainer) -> list[tuple]:
    """Every network call of one training iteration: the module, detached copies of its inputs,
    and what the call was differentiated for. Inside the sampler's chain (``sampler.sample``) a
    call needs the gradient to its inputs only (Langevin) or none; elsewhere a call with grad
    enabled feeds a loss and needs the parameters' gradient too, and a call whose input gradient
    is taken with ``create_graph`` (DDAEBM's R1 penalty) needs the backward of that gradient."""
    calls, handles, phase = [], [], {"sampling": False}
    copy = lambda a: a.detach().clone() if torch.is_tensor(a) else a

    def hook(module, args, kwargs):
        inputs_need_grad = any(torch.is_tensor(a) and a.requires_grad for a in args)
        if not torch.is_grad_enabled():
            need = "none"
        elif phase["sampling"]:
            need = "inputs" if inputs_need_grad else "none"
        else:
            need = "parameters+inputs" if inputs_need_grad else "parameters"
        calls.append((module, tuple(map(copy, args)), {k: copy(v) for k, v in kwargs.items()}, need))

    sampler, sample = trainer.model.sampler, trainer.model.sampler.sample

    def sampling(*a, **kw):
        phase["sampling"] = True
        try:
            return sample(*a, **kw)
        finally:
            phase["sampling"] = False

    grad = torch.autograd.grad

    def grad_for_a_penalty(*a, **kw):  # R1: the gradient is differentiated again (double backward)
        if kw.get("create_graph") and not phase["sampling"] and calls:
            calls[-1] = (*calls[-1][:3], "second-order")
        return grad(*a, **kw)

    sampler.sample, torch.autograd.grad = sampling, grad_for_a_penalty
    for module in trainer.model.trained_networks().values():
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        trainer.train_step()
    finally:
        for h in handles:
            h.remove()
        del sampler.sample
        torch.autograd.grad = grad
    return calls


def replay(calls) -> None:
    """Each recorded call alone: forward, then backward to what it was differentiated for."""
    for module, args, kwargs, need in calls:
        if need == "none":
            with torch.no_grad():
                module(*args, **kwargs)
            continue
        inputs = [a.detach().requires_grad_(True) if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        out = module(*inputs, **kwargs).float().sum()
        wrt = [a for a in inputs if torch.is_tensor(a) and a.requires_grad]
        if need == "inputs":
            torch.autograd.grad(out, wrt)
        elif need == "second-order":  # the loss holds ‖∇ₓ out‖²: backward through the gradient too
            (g,) = torch.autograd.grad(out, wrt[:1], create_graph=True)
            (out + g.pow(2).sum()).backward()
        else:
            out.backward()
    for module, *_ in calls:
        module.zero_grad(set_to_none=True)


def median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(recipe: Recipe, repeats: int, n_generate: int) -> dict:
    trainer = build(recipe)
    iteration = median_seconds(trainer.train_step, repeats)
    calls = record_calls(trainer)
    floor = median_seconds(lambda: replay(calls), repeats)
    model = trainer.ema.module.eval()
    g = torch.Generator().manual_seed(0)
    per_sample = median_seconds(lambda: model.generate(n_generate, generator=g), max(3, repeats // 4), warmup=1)
    return {"iteration_ms": 1e3 * iteration, "floor_ms": 1e3 * floor, "ratio": iteration / floor,
            "network_calls": len(calls), "per_sample_us": 1e6 * per_sample / n_generate,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def scaling_rows(repeats: int) -> list[dict]:
    """DRL's cost along one axis at a time, from its preset."""
    rows = []
    data_dir = Path(tempfile.mkdtemp())
    for dim in (2, 64, 784, 3072):
        path = data_dir / f"points_{dim}.npy"
        np.save(path, np.random.default_rng(0).standard_normal((4096, dim)).astype(np.float32))
        rows.append({"axis": "dimension", "value": dim, **measure(Recipe.from_name("drl").override(
            {"data": {"name": "file", "path": str(path)}}), repeats, 256)})
    for batch in (64, 256, 1024):
        rows.append({"axis": "batch", "value": batch, **measure(Recipe.from_name("drl").override(
            {"train.batch_size": batch}), repeats, 256)})
    for T in (2, 6, 12):
        rows.append({"axis": "T", "value": T, **measure(Recipe.from_name("drl").override(
            {"schedule.num_levels": T}), repeats, 256)})
    for K in (5, 15, 30, 60):
        rows.append({"axis": "K", "value": K, **measure(Recipe.from_name("drl").override(
            {"sampler.n_steps": K}), repeats, 256)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["drl", "cdrl", "ddaebm", "dxmi"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--scaling", action="store_true", help="add DRL's scaling rows")
    ap.add_argument("--images", action="store_true", help="add the Fashion-MNIST presets (28×28 networks), eager")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("speed"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.recipes:
        for compiled in (False,) if args.no_compile else (False, True):
            recipe = Recipe.from_name(name).override({"train.threads": args.threads, "train.compile": compiled})
            if compiled and recipe.divergence["name"] in ("jeffrey", "kl", "reverse_kl") \
                    and recipe.divergence.get("r1_gamma", 0) > 0:
                rows.append({"recipe": name, "sampler": recipe.sampler["name"], "compile": True,
                             "skipped": "gradient penalty: compiled networks cannot backpropagate through a gradient"})
                continue
            row = {"recipe": name, "sampler": recipe.sampler["name"], "compile": compiled,
                   **measure(recipe, args.repeats, 1000)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in args.recipes if args.images else []:  # networks of real size: what is left is fixed per-op cost
        recipe = Recipe.from_name(f"{name}_fmnist").override({"train.threads": args.threads, "train.eval_every": 0})
        row = {"recipe": recipe.name, "sampler": recipe.sampler["name"], "compile": False,
               **measure(recipe, max(3, args.repeats // 4), 64)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    scaling = scaling_rows(args.repeats) if args.scaling else []

    header = {
        "command": "python benchmarks/speed.py " + " ".join(
            (["--recipes", *args.recipes] if args.recipes != ap.get_default("recipes") else [])
            + (["--no-compile"] if args.no_compile else []) + (["--scaling"] if args.scaling else [])
            + (["--images"] if args.images else [])
            + (["--threads", str(args.threads)] if args.threads != 1 else [])),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), CPU",
        "versions": f"ebmkit {ebmkit.__version__}, torch {torch.__version__}, python {platform.python_version()}",
    }
    args.out.with_suffix(".json").write_text(json.dumps({**header, "rows": rows, "scaling": scaling}, indent=1))
    lines = ["# Speed: training iteration against the network floor", "",
             f"`{header['command']}` — {header['date']}; {header['machine']}; {header['versions']}", "",
             "| recipe | sampler | compile | iteration (ms) | floor (ms) | ratio | network calls | per sample (µs) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['recipe']} | {r['sampler']} | yes | not run: {r['skipped']} | | | | |")
            continue
        lines.append(f"| {r['recipe']} | {r['sampler']} | {'yes' if r['compile'] else 'no'} | {r['iteration_ms']:.1f} | "
                     f"{r['floor_ms']:.1f} | {r['ratio']:.2f} | {r['network_calls']} | {r['per_sample_us']:.1f} |")
    if scaling:
        lines += ["", "## DRL scaling (preset, one axis changed)", "",
                  "| axis | value | iteration (ms) | floor (ms) | ratio | per sample (µs) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['axis']} | {r['value']} | {r['iteration_ms']:.1f} | {r['floor_ms']:.1f} | {r['ratio']:.2f} | "
                  f"{r['per_sample_us']:.1f} |" for r in scaling]
    peak = max((r.get("peak_rss_mb", 0) for r in rows + scaling), default=0)
    lines += ["", f"Peak resident memory of the whole run: {peak:.0f} MB."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
