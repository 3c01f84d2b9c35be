"""The GPU path in one prepared check: every image preset trained, resumed and sampled on one CUDA device.

    python benchmarks/gpu_check.py                                  # writes benchmarks/gpu.md and gpu.json
    python benchmarks/gpu_check.py --device cpu --tiny --out DIR    # the same code on a CPU, tiny networks (the tests)

Every registered preset whose data set is an image set (its class an `ImageDataset`: the
``*_cifar10`` presets, ``ddaebm_celeba64``, the ``*_fmnist`` presets, and any image preset added
later, read from the recipe registry at run time) trains on random images written in its data
set's real layout: CIFAR-10's pickled batches (`ebmkit.testing.write_fake_cifar10`),
Fashion-MNIST's gzipped IDX files, a folder of CelebA-sized (178×218) JPEG and PNG faces for the
face box. For each preset:

- a few training iterations in fp32 and in bf16 (`train.precision`), eager and with
  `train.compile`, except where the divergence differentiates twice (DDAEBM's R1 penalty: the
  trainer refuses compile there);
- the same fp32 training under ``python -m torch.distributed.run --standalone --nproc-per-node 1
  -m ebmkit train`` (`ebmkit train --nproc 1` does not launch torchrun). With one process the
  trainer starts no process group, so this runs the launcher and the environment it sets, not NCCL;
- resume: N iterations straight against ``ebmkit train --resume`` from N/2, both under torch's
  deterministic algorithms, every tensor of the two final checkpoints (raw and EMA weights,
  optimizer moments, RNG states) compared bitwise on the device. The run resumed is the straight
  run's folder as it stood at N/2, copied: what a run stopped there leaves on disk. Where they
  differ and torch warned of a kernel without a deterministic version, a second straight run
  says whether the kernels or the resume are to blame;
- generation: ``ebmkit sample RUN --seeds 0-15 --device DEVICE`` on the fp32 run, in this
  process, so that its `generate` calls alone are timed.

Per preset and mode it records the median time of the training iterations after the warm-up
(`Trainer.train_step` between two torch.cuda.synchronize calls), the first iteration's time
(CUDA start-up, compilation), the peak GPU memory (torch.cuda.max_memory_allocated, reset per
run), samples per second of the ``ebmkit sample`` call's generation (the model loaded and on
the device, the kernels warm from the training runs), whether losses and samples are finite
and whether resume is exact, in gpu.md and gpu.json, rewritten after every check so that a
run cut short keeps what it did. It exits 1 and prints one line per failed check (a crash, a
non-finite loss or sample, an inexact resume).

Sizing, for 5 minutes on one H100: estimated, not measured (the session that wrote this had no
GPU). The networks and sampler chains are the presets' own; the batch is cut to at most 32, each
timed run takes 8 iterations (the first 3 untimed), resume 4 (2 + 2), sampler pretraining 2
steps. The GPU work is small: DRL's CIFAR-10 ResNet costs 11 GFLOP per image forward, ~25 per
Langevin step, so an fp32 iteration at batch 32 and K = 30 is ~26 TFLOP (a fraction of a
second), and the 64 samples the trainer draws at the end of every run (6 levels × 30 steps)
~0.3 PFLOP, about 2 s. What costs is around it. Every checkpoint (step 0, the last, and N/2 for
resume) holds raw and EMA weights and two Adam moments, 1.4 GB for DDAEBM's 85M parameters,
hashed twice and fsynced: seconds each. Each torchrun launch starts two Python processes (8 s in
all on a 2-core CPU). Compiling is the unknown: twelve compiles (six presets, two precisions) of
up to three networks each; tiny ``drl_fmnist`` took 106 s on the 2-core CPU. So the eager runs,
sampling and resume of every preset come first (two to three minutes by this estimate), then the
CUDA-only checks preset by preset, cheapest first. A check that would start after ``--budget``
seconds (300) is listed as not run, and every row says how long it took, to size the next run by.
Run folders are deleted as soon as their checks are done (a full run would otherwise hold tens of GB).

``--device cpu --tiny`` runs the same code on a CPU with every image network at its smallest
width (4 channels, one block per resolution), batches of 4, two Langevin steps per level, at most
10 noise levels (only DSM's presets have more), 2 iterations per run (the second timed) and resume 1 + 1; bf16, torchrun and compile are listed as CUDA-only. It
writes to ``--out`` (default a temporary folder), never to benchmarks/gpu.md: only a full CUDA
run writes the committed files. cuBLAS's deterministic workspace (CUBLAS_WORKSPACE_CONFIG
:4096:8, for the resume check) is set for the whole run.
"""

from __future__ import annotations

import os

# cuBLAS's deterministic workspace, for the resume check: must be set before CUDA starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import gc
import gzip
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from safetensors.torch import load_file

import ebmkit
from ebmkit import Recipe
from ebmkit.data.images import ImageDataset
from ebmkit.registry import DATASETS, DIVERGENCES, SCHEDULES, registry
from ebmkit.testing import write_fake_cifar10
from ebmkit.training import Trainer
from ebmkit.training.checkpoint import find_checkpoint
from ebmkit.training.rundir import LOCK

HERE = Path(__file__).resolve().parent
SEEDS = "0-15"
N_SEEDS = 16
QUIET = Console(stderr=True, quiet=True)  # the trainer's own lines; this script prints one per check
CELEBA_ALIGNED = (178, 218)  # width × height of CelebA's aligned faces, the pictures a face box is cut from
CHAIN_LENGTH = {"langevin": "sampler.n_steps", "cooperative": "sampler.refine.n_steps", "replay": "sampler.n_steps",
                "reverse_diffusion": "sampler.steps_per_level", "tempered_langevin": "sampler.n_steps"}
MODES = ["fp32", "bf16", "fp32+compile", "bf16+compile", "torchrun", "resume", "sample"]
FILE_ORDER = {"model": 0, "ema": 1, "optimizer": 2}  # a checkpoint's files, the raw weights first
CUDA_ONLY = "CUDA only: not run on the CPU"
BUDGET_SPENT = "not run: the time budget was spent"
TORCHRUN_NOTE = "world size 1: ebmkit starts no process group, so NCCL is not exercised"


@dataclass(frozen=True)
class Size:
    steps: int  # iterations of each timed run
    warmup: int  # first iterations left out of the timing (CUDA start-up, compilation)
    resume_steps: int  # N of the resume check: N straight against resumed from N/2
    batch: int  # at most this many images per batch
    chain: int | None  # Langevin steps per level (None: the preset's)
    levels: int | None  # at most this many noise levels (None: the preset's; DSM's presets have 100 and 232)
    images: int  # fake training images written


FULL = Size(steps=8, warmup=3, resume_steps=4, batch=32, chain=None, levels=None, images=128)
TINY = Size(steps=2, warmup=1, resume_steps=2, batch=4, chain=2, levels=10, images=8)


class CheckError(RuntimeError):
    """A check that ran and found something wrong (a wrong shape, a failed command)."""


# -- what to check ----------------------------------------------------------------------------
def image_presets() -> list[str]:
    """Registered presets whose data set is an image set, in name order (a preset that cannot be
    built, a broken plugin's, is said and left out)."""
    names = []
    for name in registry("recipes").names():
        try:
            factory = DATASETS.get(Recipe.from_name(name).data["name"]).obj
        except Exception as exc:
            print(f"warning: recipe '{name}' left out, it cannot be built: {exc}", file=sys.stderr)
            continue
        if isinstance(factory, type) and issubclass(factory, ImageDataset):
            names.append(name)
    return names


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of unsigned bytes (LeCun's MNIST format, as `ebmkit.data.images.read_idx` reads it)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_pictures(root: Path, spec: dict, n: int) -> None:
    """n random pictures for an ``image_folder`` set: CelebA's aligned 178×218 where the preset cuts
    a box (grown if the box is larger), else size × size; JPEG as CelebA ships, every fourth a PNG."""
    from PIL import Image

    crop, size = spec.get("crop"), spec["size"]
    width, height = (max(CELEBA_ALIGNED[0], crop[2]), max(CELEBA_ALIGNED[1], crop[3])) if crop else (size, size)
    channels = spec.get("channels", 3)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (height, width, channels) if channels == 3 else (height, width), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i + 1:06d}.{'png' if i % 4 == 3 else 'jpg'}")


def fake_data(spec: dict, root: Path, n: int) -> dict:
    """Random images in the real layout of the data set ``spec`` names; the data options that read them."""
    name = spec["name"]
    root.mkdir(parents=True)
    if name == "cifar10":
        return {"data.root": str(write_fake_cifar10(root, n_train=n, n_test=10))}
    if name in ("fashion_mnist", "mnist"):
        rng = np.random.default_rng(0)
        for stem, count in (("train", n), ("t10k", 10)):
            write_idx(root / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        return {"data.root": str(root)}
    if name == "image_folder":
        write_pictures(root, spec, n)
        return {"data.root": str(root)}
    raise CheckError(f"no random stand-in for the data set '{name}': add one to fake_data in {Path(__file__).name}")


def smallest(node):
    """The same assembly with every image network at its smallest width: 4 channels, one block per
    resolution, 4-wide embeddings (the same modules and resolutions, a fraction of the work)."""
    if isinstance(node, dict):
        node = {k: smallest(v) for k, v in node.items()}
        if node.get("name") == "unet":
            node.update(channels=4, num_res_blocks=1, latent_embedding_dim=4, mapping_layers=0)
        elif node.get("name") == "resnet":
            node.update(channels=4, num_res_blocks=1, embedding_dim=4, temb_dim=4)
        return node
    if isinstance(node, list):
        return [smallest(v) for v in node]
    return node


def steps(recipe: Recipe, n: int) -> dict:
    """The changes that make a run n iterations long; a recipe with phases (Energy Matching's warm-up
    and main phase) keeps every phase, n split between them (the first takes the remainder)."""
    phases = recipe.train.phases
    if not phases:
        return {"train.steps": n}
    split = [n // len(phases) + (n % len(phases) if i == 0 else 0) for i in range(len(phases))]
    return {"train.steps": n, "train.phases": [{**p.model_dump(), "steps": k} for p, k in zip(phases, split)]}


def sized(preset: Recipe, data: dict, device: str, size: Size, tiny: bool) -> Recipe:
    """The preset cut to the check's size, reading the fake data; networks shrunk only when ``tiny``."""
    recipe = Recipe.create(**smallest(preset.model_dump(mode="json"))) if tiny else preset
    changes = {**data, "train.device": device, **steps(preset, size.steps),
               "train.batch_size": min(preset.train.batch_size, size.batch),
               "train.pretrain_steps": min(preset.train.pretrain_steps, 2), "train.log_every": 1,
               "train.checkpoint_every": size.steps, "train.eval_every": 0, "train.keep_best": False}
    if size.chain and preset.sampler["name"] in CHAIN_LENGTH:
        changes[CHAIN_LENGTH[preset.sampler["name"]]] = size.chain
    if size.levels and (preset.schedule or {}).get("num_levels", 0) > size.levels:
        changes["schedule.num_levels"] = size.levels
    return recipe.override(changes)


def differentiates_twice(recipe: Recipe) -> bool:
    """Whether the divergence backpropagates through a gradient of the energy (the trainer then refuses compile)."""
    schedule = None if recipe.schedule is None else SCHEDULES.build(recipe.schedule)  # a single-level recipe has none
    return DIVERGENCES.build(recipe.divergence, schedule=schedule).differentiates_twice


# -- running ----------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_memory(device: torch.device) -> None:
    """Free what earlier runs left on the GPU and restart the peak count (a no-op on the CPU, where
    gc.collect would cost a fifth of a second a run)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def stats_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "stats.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def all_finite(rows: list[dict]) -> bool:
    """Every logged number finite, and something logged."""
    return bool(rows) and all(math.isfinite(v) for row in rows for v in row.values() if isinstance(v, (int, float)))


def train(recipe: Recipe, run_dir: Path, device: torch.device, warmup: int, before_step=None) -> dict:
    """Train in this process, each `Trainer.train_step` between two synchronisations; the median
    iteration after ``warmup``, the first one, the peak memory, whether every logged loss is finite.
    ``before_step(trainer)`` runs before each step (after the previous step's checkpoint)."""
    fresh_memory(device)
    trainer = Trainer(recipe, run_dir, progress=False, console=QUIET)
    times, step = [], trainer.train_step

    def timed_step():
        if before_step is not None:
            before_step(trainer)
        synchronize(device)
        start = time.perf_counter()
        metrics = step()
        synchronize(device)
        times.append(time.perf_counter() - start)
        return metrics

    trainer.train_step = timed_step
    trainer.fit()
    rows = stats_rows(run_dir)
    return {"ms_per_iter": 1e3 * statistics.median(times[warmup:]) if len(times) > warmup else None,
            "first_iter_s": times[0] if times else None, "peak_mib": peak_mib(device), "finite": all_finite(rows),
            "loss": rows[-1]["loss"] if rows else None}


def ebmkit_command(args: list[str]) -> None:
    """An `ebmkit` command in this process (the same code as the console script)."""
    from ebmkit.cli import app

    code = app(args, standalone_mode=False)
    if code:
        raise CheckError(f"`ebmkit {' '.join(args[:2])} …` exited {code}")


@contextmanager
def timed_generation(device: torch.device, seconds: list[float]):
    """`ebmkit sample`'s code, with the seconds of each `generate` call of the model it loads
    (between two synchronisations) appended to ``seconds``."""
    import ebmkit.cli as cli

    load = cli._load_run

    def load_timed(*args, **kwargs):
        model = load(*args, **kwargs)
        generate = model.generate

        def timed(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            x = generate(*args, **kwargs)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
            return x

        model.generate = timed
        return model

    cli._load_run = load_timed
    try:
        yield
    finally:
        cli._load_run = load


def sample(run_dir: Path, device: torch.device, shape: tuple[int, ...]) -> dict:
    """``ebmkit sample RUN --seeds 0-15``: samples per second of its generation, its array's shape
    and finiteness."""
    out, seconds = run_dir / "seeds.npy", []
    fresh_memory(device)
    with timed_generation(device, seconds):
        ebmkit_command(["sample", str(run_dir), "--seeds", SEEDS, "--device", str(device), "-o", str(out)])
    x = np.load(out)
    if x.shape != (N_SEEDS, *shape):
        raise CheckError(f"ebmkit sample wrote shape {x.shape}, expected {(N_SEEDS, *shape)}")
    return {"samples_per_s": N_SEEDS / sum(seconds), "peak_mib": peak_mib(device), "finite": bool(np.isfinite(x).all()),
            "sample_shape": list(x.shape), "note": ""}


@contextmanager
def deterministic():
    """torch's deterministic algorithms (warning where an op has none); yields the warnings they raise."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield caught
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def final_checkpoint(run_dir: Path, device: torch.device) -> tuple[int, dict[str, dict[str, torch.Tensor]]]:
    """A run's last checkpoint: its step, and each of its files' tensors loaded straight onto
    ``device`` (not through ebmkit's loader, which hashes every file twice: seconds a GB)."""
    folder = find_checkpoint(run_dir / "checkpoint")
    if folder is None:
        raise CheckError(f"no checkpoint in '{run_dir}'")
    step = json.loads((folder / "state.json").read_text())["step"]
    return step, {path.stem: load_file(path, device=str(device)) for path in folder.glob("*.safetensors")}


def first_difference(a: Path, b: Path, device: torch.device) -> str | None:
    """Where two runs' final checkpoints differ (the step, or the first tensor not bitwise equal
    on ``device``, raw weights first), or None."""
    (step_a, files_a), (step_b, files_b) = final_checkpoint(a, device), final_checkpoint(b, device)
    if step_a != step_b:
        return f"steps {step_a} and {step_b}"
    for name in sorted(set(files_a) | set(files_b), key=lambda name: (FILE_ORDER.get(name, len(FILE_ORDER)), name)):
        tensors_a, tensors_b = files_a.get(name, {}), files_b.get(name, {})
        if tensors_a.keys() != tensors_b.keys():
            return f"{name}: different tensors ({sorted(set(tensors_a) ^ set(tensors_b))[:3]})"
        for key in sorted(tensors_a):
            x, y = tensors_a[key], tensors_b[key]
            if not torch.equal(x, y):
                if not x.is_floating_point():
                    return f"{name}.safetensors {key}"
                return f"{name}.safetensors {key}, largest gap {(x.double() - y.double()).abs().max().item():.3g}"
    return None


def resume(recipe: Recipe, work: Path, device: torch.device) -> dict:
    """N iterations straight against ``ebmkit train --resume`` from N/2, under deterministic
    algorithms; the final checkpoints compared tensor by tensor on the device. The run resumed is
    the straight run's folder as it stood at N/2 (its checkpoint, config and log), copied: what
    a run stopped there leaves on disk, without training the first half twice."""
    n = recipe.train.steps
    recipe = recipe.override({"train.checkpoint_every": n // 2})
    straight, resumed = work / "straight", work / "resumed"

    def copy_at_half(trainer):
        if trainer.step == n // 2:
            shutil.copytree(straight, resumed, ignore=shutil.ignore_patterns(LOCK))

    with deterministic() as caught:
        train(recipe, straight, device, warmup=0, before_step=copy_at_half)
        fresh_memory(device)
        ebmkit_command(["train", "--resume", str(resumed), "--no-progress"])
        difference = first_difference(straight, resumed, device)
        unsafe = sorted({str(w.message).split("\n")[0][:120] for w in caught if "determinis" in str(w.message)})
        note = f"{n // 2} + {n // 2} of {n} iterations"
        if difference and unsafe:  # kernels torch could not make deterministic ran: does a second straight run agree?
            train(recipe, work / "straight_again", device, warmup=0)
            again = first_difference(straight, work / "straight_again", device)
            note += (f"; differ at {difference}; two straight runs differ as well ({again}): nondeterministic kernels, "
                     "not the resume" if again else f"; differ at {difference}, where two straight runs agree")
        elif difference:
            note += (f"; differ at {difference}, and torch ran no kernel without a deterministic version: the resume "
                     "is not exact")
    if unsafe:
        note += "; without a deterministic kernel: " + " | ".join(unsafe)
    return {"resume_exact": difference is None, "finite": all_finite(stats_rows(resumed)),
            "peak_mib": peak_mib(device), "note": note}


def torchrun(recipe: Recipe, run_dir: Path, warmup: int) -> dict:
    """``python -m torch.distributed.run --standalone --nproc-per-node 1 -m ebmkit train``: the
    iteration times are the differences of stats.jsonl's clock, which each log line reads after
    its losses reach the host (log_every 1)."""
    path = run_dir.with_suffix(".json")
    path.write_text(recipe.model_dump_json())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
               "-m", "ebmkit", "train", "--recipe", str(path), "--out", str(run_dir), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise CheckError(f"torchrun exited {done.returncode}: {last[0][:300]}")
    rows = stats_rows(run_dir)
    clock = [0.0] + [row["time"] for row in rows]
    times = [b - a for a, b in zip(clock, clock[1:])]
    return {"ms_per_iter": 1e3 * statistics.median(times[warmup:]) if len(times) > warmup else None,
            "first_iter_s": times[0] if times else None, "finite": all_finite(rows),
            "loss": rows[-1]["loss"] if rows else None, "note": TORCHRUN_NOTE}


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Preset:
    name: str
    recipe: Recipe  # sized, reading the fake data
    shape: tuple[int, ...]
    twice: bool


class Check:
    """Runs the checks in order, one row each, within a time budget; rewrites the outputs after every row."""

    def __init__(self, args, device: torch.device, size: Size, out: Path, work: Path):
        self.args, self.device, self.size, self.out, self.work = args, device, size, out, work
        self.rows: list[dict] = []
        self.start = time.perf_counter()

    def row(self, preset: Preset, mode: str, job=None, skip: str | None = None) -> dict:
        row = {"preset": preset.name, "data": preset.recipe.data["name"], "mode": mode,
               "batch": preset.recipe.train.batch_size, "status": "ok", "ms_per_iter": None, "first_iter_s": None,
               "peak_mib": None, "samples_per_s": None, "finite": None, "resume_exact": None, "note": ""}
        elapsed = time.perf_counter() - self.start
        if skip is None and elapsed > self.args.budget:
            skip = f"{BUDGET_SPENT} ({self.args.budget:.0f} s)"
        started = time.perf_counter()
        if skip is not None:
            row.update(status="skipped", note=skip)
        else:
            try:
                row.update(job())
            except Exception as exc:  # a crash is a result: the row says what it was
                row.update(status="failed", note=f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}")
            if row["finite"] is False or row["resume_exact"] is False:
                row["status"] = "failed"
        row["wall_s"] = time.perf_counter() - started
        self.rows.append(row)
        print(f"{row['preset']:<18} {mode:<13} {row['status']:<7} {row['wall_s']:6.1f} s  "
              f"{fmt(row['ms_per_iter'], '.1f', ' ms/iter')}  {row['note'][:160]}", file=sys.stderr, flush=True)
        write_outputs(self)
        return row

    def run(self, names: list[str]) -> None:
        presets = [p for p in (self.prepare(name) for name in names) if p is not None]
        cuda = self.device.type == "cuda"
        fp32 = {}
        for p in presets:  # the eager runs, resume and sampling: cheap and every preset's
            fp32[p.name] = self.row(p, "fp32", lambda: train(p.recipe, self.work / p.name / "fp32", self.device,
                                                             self.size.warmup))
            self.row(p, "sample", lambda: sample(self.work / p.name / "fp32", self.device, p.shape),
                     skip="not run: the fp32 run failed" if fp32[p.name]["status"] == "failed" else None)
            self.row(p, "bf16", lambda: train(p.recipe.override({"train.precision": "bf16"}),
                                              self.work / p.name / "bf16", self.device, self.size.warmup),
                     skip=None if cuda else CUDA_ONLY)
            self.row(p, "resume", lambda: resume(p.recipe.override(steps(p.recipe, self.size.resume_steps)),
                                                 self.work / p.name / "resume", self.device))
            self.discard(p, "fp32", "bf16", "resume")
        # the CUDA-only checks, a preset's all together, cheapest preset first (by its fp32 iteration):
        # the budget may end before the last, and compile's cost is the one this script could not estimate
        for p in sorted(presets, key=lambda p: fp32[p.name]["ms_per_iter"] or math.inf):
            self.row(p, "torchrun", lambda: torchrun(p.recipe, self.work / p.name / "torchrun", self.size.warmup),
                     skip=None if cuda else CUDA_ONLY)
            for precision in ("fp32", "bf16"):
                skip = (CUDA_ONLY if not cuda else
                        f"the divergence '{p.recipe.divergence['name']}' differentiates twice (a gradient penalty): "
                        "the trainer refuses compile" if p.twice else None)
                self.row(p, f"{precision}+compile", lambda: self.compiled(p, precision), skip=skip)
            self.discard(p, "torchrun", "torchrun.json", "fp32+compile", "bf16+compile")

    def discard(self, p: Preset, *runs: str) -> None:
        """Delete run folders whose checks are done (a checkpoint of a CIFAR-10 preset is up to 1.4 GB)."""
        for run in runs:
            path = self.work / p.name / run
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def compiled(self, p: Preset, precision: str) -> dict:
        import torch._dynamo

        torch._dynamo.reset()  # the presets share forward code: without a reset they would hit dynamo's recompile limit
        recipe = p.recipe.override({"train.compile": True, "train.precision": precision})
        return train(recipe, self.work / p.name / f"{precision}+compile", self.device, self.size.warmup)

    def prepare(self, name: str) -> Preset | None:
        """The preset sized and reading its fake data; None (and a failed row) if that fails."""
        try:
            preset = Recipe.from_name(name)
            data = fake_data(preset.data, self.work / name / "data", self.size.images)
            recipe = sized(preset, data, str(self.device), self.size, self.args.tiny)
            shape = tuple(DATASETS.build(recipe.data).shape)
            return Preset(name, recipe, shape, differentiates_twice(recipe))
        except Exception as exc:
            self.rows.append({"preset": name, "data": "", "mode": "setup", "batch": None, "status": "failed",
                              "note": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}", "wall_s": 0.0})
            return None


# -- outputs ----------------------------------------------------------------------------------
def fmt(value, spec: str, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return f"{value:{spec}}{unit}"


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.machine()})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "ebmkit": ebmkit.__version__,
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def failures(rows: list[dict]) -> list[str]:
    """One line per failed check."""
    return [f"FAIL {r['preset']} {r['mode']}: {r['note'] or 'not finite'}" for r in rows if r["status"] == "failed"]


def over_budget(rows: list[dict]) -> list[str]:
    return [f"{r['preset']} {r['mode']}" for r in rows if r["note"].startswith(BUDGET_SPENT)]


def in_order(rows: list[dict]) -> list[dict]:
    """By preset, then in the order of MODES."""
    order = {mode: i for i, mode in enumerate(["setup", *MODES])}
    return sorted(rows, key=lambda r: (r["preset"], order.get(r["mode"], len(order))))


def write_outputs(check: Check) -> None:
    rows = in_order(check.rows)
    env = environment(check.device)
    header = {"command": check.args.command, "date": datetime.now().isoformat(timespec="seconds"), **env,
              "tiny": check.args.tiny, "size": check.size.__dict__, "budget_s": check.args.budget,
              "total_s": round(time.perf_counter() - check.start, 1)}
    (check.out / "gpu.json").write_text(json.dumps({**header, "rows": rows, "failures": failures(rows),
                                                    "not_run": over_budget(rows)}, indent=2) + "\n")
    s = check.size
    networks = "every network at its smallest width" if check.args.tiny else "the presets' networks and sampler chains"
    lines = [
        "# GPU check: every image preset on one device",
        "",
        f"`{check.args.command}` — {header['date']}; {env['device']}; torch {env['torch']}, "
        f"CUDA {env['cuda'] or '—'}, cuDNN {env['cudnn'] or '—'}; ebmkit {env['ebmkit']}, python {env['python']}; "
        f"{header['total_s']:.0f} s in all",
        "",
        f"Random images in each data set's real layout; {networks}, "
        f"batch ≤ {s.batch}, {s.steps} iterations per timed run (the median of those after the first {s.warmup}), "
        f"resume {s.resume_steps // 2} + {s.resume_steps // 2}; the docstring of benchmarks/gpu_check.py says how "
        "it is sized. ms / iter and first iter: `Trainer.train_step` between two synchronisations (torchrun: "
        "stats.jsonl's clock); peak MiB: torch.cuda.max_memory_allocated of the run." + (
            f" fp32 runs take TF32 where torch's defaults allow it (convolutions {env['tf32']['cudnn']}, matmuls "
            f"{env['tf32']['matmul']})." if env["cuda"] else ""),
        "",
        "| preset | mode | batch | ms / iter | first iter (s) | peak MiB | samples / s | finite | resume exact "
        "| wall (s) | status | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- | --- |",
    ]
    for r in rows:
        cells = [r["preset"], r["mode"], fmt(r.get("batch"), "d"), fmt(r.get("ms_per_iter"), ".1f"),
                 fmt(r.get("first_iter_s"), ".2f"), fmt(r.get("peak_mib"), ".0f"), fmt(r.get("samples_per_s"), ".1f"),
                 fmt(r.get("finite"), ""), fmt(r.get("resume_exact"), ""), fmt(r.get("wall_s"), ".1f"), r["status"],
                 r.get("note", "").replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    failed = failures(rows)
    lines += ["", "Failures: " + ("none" if not failed else f"{len(failed)}"), *[f"- {line}" for line in failed]]
    if skipped := over_budget(rows):
        lines += ["", f"Not run, the time budget spent: {', '.join(skipped)}"]
    (check.out / "gpu.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="every network at its smallest width, batches of 4")
    parser.add_argument("--out", type=Path, help="folder for gpu.md and gpu.json (default: benchmarks/ for a full "
                        "CUDA run, else a temporary folder)")
    parser.add_argument("--presets", help="comma-separated subset of the image presets (default: all of them)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds after which no further check starts")
    args = parser.parse_args(argv)
    args.command = " ".join(["python benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (use --device cpu --tiny)")
    if args.tiny:
        torch.set_num_threads(1)  # tiny networks gain nothing from more, and the machine may be shared
    committed = device.type == "cuda" and not args.tiny and not args.presets  # only a full CUDA run writes gpu.md
    out = args.out or (HERE if committed else Path(tempfile.mkdtemp(prefix="gpu-check-")))
    if out.resolve() == HERE and not committed:
        parser.error("benchmarks/gpu.md and gpu.json are written by a full CUDA run only (no --tiny, no --presets); "
                     "give another --out")
    out.mkdir(parents=True, exist_ok=True)
    names = image_presets()
    if args.presets:
        unknown = set(args.presets.split(",")) - set(names)
        if unknown:
            parser.error(f"--presets: {', '.join(sorted(unknown))} not among the image presets {', '.join(names)}")
        names = [n for n in names if n in args.presets.split(",")]
    with tempfile.TemporaryDirectory(prefix="gpu-check-runs-") as work:
        check = Check(args, device, TINY if args.tiny else FULL, out, Path(work))
        check.run(names)
        write_outputs(check)
    failed, skipped = failures(in_order(check.rows)), over_budget(check.rows)
    for line in failed:
        print(line)
    print(f"wrote {out / 'gpu.md'} and gpu.json: {len(check.rows)} checks, {len(failed)} failed, {len(skipped)} not "
          f"run for the time budget, {time.perf_counter() - check.start:.0f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
