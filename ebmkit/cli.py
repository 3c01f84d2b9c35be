"""The `ebmkit` command: train, sample, eval, show, list, runs, hub push / pull. Every command works
with no flags on the built-in default (the `drl` recipe on a 2D toy set, on the CPU)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
# Typer (since 0.26) vendors Click and exports none of its exception classes but BadParameter.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Energy-based models: interchangeable training algorithms on one trainer core.")
err = Console(stderr=True)
out = Console()

DEFAULT_RECIPE = "drl"


def _print_error(message: str) -> None:
    """Every error the user sees: one line (a library's message may span several), and what it
    quotes of their input is not read as Rich markup."""
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    _print_error(message)
    raise typer.Exit(2)


def _user_errors():
    from ebmkit.data import DataError
    from ebmkit.hub import HubError
    from ebmkit.metrics.frechet import MetricError
    from ebmkit.recipes import RecipeError
    from ebmkit.registry import ComponentError
    from ebmkit.training import CheckpointError, RunDirectoryError, TrainingError

    return (RecipeError, ComponentError, DataError, CheckpointError, TrainingError, RunDirectoryError, HubError,
            MetricError, FileExistsError)


def parse_value(text: str):
    """`--set` values are JSON when they parse (numbers, true, null, lists), else strings; a list
    in brackets may name strings bare: ``[tensorboard,jsonl]``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if text.startswith("[") and text.endswith("]") and "[" not in text[1:-1] and "{" not in text:
            return [parse_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
        return text


def parse_sets(items: list[str]) -> dict:
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--set takes KEY=VALUE (e.g. train.lr=3e-4), got '{item}'")
        changes[key.strip()] = parse_value(value.strip())
    return changes


MAX_SEEDS = 1_000_000  # per call: a list of seeds, and the samples they draw, are held in memory
MAX_SEED = 2**63 - 1  # a torch.Generator's seed is a 64-bit integer


def parse_seeds(text: str) -> list[int]:
    """``0-999`` or ``0,4,10-19`` (ranges inclusive) → a list of seeds, at most MAX_SEEDS."""
    ranges = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
            _fail(f"--seeds takes non-negative integers and ranges like 0-999 or 0,4,10-19, got '{text}'")
        ranges.append(range(int(lo), int(hi if sep else lo) + 1))
    if max(r[-1] for r in ranges) > MAX_SEED:
        _fail(f"--seeds: a seed is at most 2^63 − 1 = {MAX_SEED}, got '{text}'")
    if (count := sum(len(r) for r in ranges)) > MAX_SEEDS:
        _fail(f"--seeds '{text}' names {count:,} seeds; one call draws at most {MAX_SEEDS:,} (split the range over "
              "several calls: sample i depends only on seed i)")
    return [seed for r in ranges for seed in r]


def _without_option(argv: list[str], option: str) -> list[str]:
    """argv less ``option VALUE`` / ``option=VALUE`` (torchrun's parser would take ``--nproc`` for its own)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


@app.command()
def train(
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="preset name (see `ebmkit list recipes`) or a "
                                         f"recipe .json/.yaml file (default {DEFAULT_RECIPE})"),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="data set name, or your own points: path.npy / path.csv (N×D)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="training iterations"),
    sets: List[str] = typer.Option([], "--set", "-s", help="override any recipe field: KEY=VALUE, repeatable"),
    logs: List[str] = typer.Option([], "--log", help="also report to this logger (train.loggers): tensorboard, mlflow, "
                                   "wandb or a plugin's; repeatable or comma-separated"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/NNN-recipe-data)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this directory from its last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start over in an existing --out directory"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved recipe and exit"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the networks being trained (train.compile)"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="data-parallel processes on this machine, launched with "
                              "torchrun (train.batch_size is the global batch)"),
):
    """Train a recipe; writes checkpoints, stats.jsonl, model.safetensors and density.png."""
    from ebmkit.data import data_spec_from_cli
    from ebmkit.loggers import missing_package
    from ebmkit.recipes import Recipe
    from ebmkit.training import Trainer
    from ebmkit.training.checkpoint import run_config

    try:
        # --data first, so that --set data.OPTION=... refines the data set --data names
        changes = {"data": data_spec_from_cli(data)} if data is not None else {}
        changes.update(parse_sets(sets))
        if steps is not None:
            changes["train.steps"] = steps
        if seed is not None:
            changes["train.seed"] = seed
        if device is not None:
            changes["train.device"] = device
        if compile:
            changes["train.compile"] = True
        if resume is not None:
            given = [flag for flag, value in (("--recipe", recipe), ("--out", out_dir), ("--overwrite", overwrite or None))
                     if value is not None]
            if given:
                _fail(f"--resume continues '{resume}' with its own recipe, in its own folder; drop {', '.join(given)} "
                      "(or start a new run without --resume)")
            base = Recipe.from_config(run_config(resume), where=str(resume / "config.json"))
            # how fast and where reports go, not what is trained: a run may move to another device,
            # thread count or logger
            unsupported = set(changes) - {"train.steps", "train.device", "train.compile", "train.threads",
                                          "train.loggers"}
            if unsupported:
                _fail(f"--resume continues the saved recipe; only --steps, --device, --compile, --log, "
                      f"--set train.threads and --set train.loggers may change, got {sorted(unsupported)}")
        elif (recipe := recipe or DEFAULT_RECIPE).endswith((".json", ".yaml", ".yml")):
            base = Recipe.load(recipe)
        else:
            base = Recipe.from_name(recipe)
        resolved = base.override(changes) if changes else base
        if logs:  # added to the recipe's loggers
            have = [spec["name"] for spec in resolved.train.loggers]
            resolved = resolved.override({"train.loggers": resolved.train.loggers
                                          + [name for name in dict.fromkeys(_names(logs)) if name not in have]})
        if dry_run:
            out.print_json(resolved.model_dump_json())
            return
        if problem := missing_package(resolved.train.loggers):  # before torchrun starts a process per rank
            _fail(problem)
        if nproc > 1 and "LOCAL_RANK" not in os.environ:  # the recipe is valid: hand the same command to torchrun
            import subprocess

            from ebmkit.training.distributed import global_batch_problem

            if problem := global_batch_problem(resolved.train.batch_size, nproc):
                _fail(problem + " (--nproc)")

            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                      "-m", "ebmkit", *_without_option(sys.argv[1:], "--nproc")]
            raise typer.Exit(subprocess.run(launch).returncode)
        Trainer(resolved, resume or out_dir, resume=resume is not None, overwrite=overwrite, progress=progress).fit()
    except _user_errors() as exc:
        _fail(str(exc))


MODEL_HELP = "a run directory written by `ebmkit train`, or a pushed model: hf://org/name[@revision]"


SAMPLER_SET_HELP = ("change how the trained model generates: sampler.KEY=VALUE (e.g. sampler.n_steps=60, "
                    "sampler.denoise=true), repeatable")


def _sampler_sets(items: list[str]) -> dict:
    """``--set`` of `sample`/`eval`: generation options of the trained sampler, nothing else."""
    changes = parse_sets(items)
    for key in changes:
        if not key.startswith("sampler.") or key in ("sampler.", "sampler.name"):
            _fail(f"--set on a trained model changes how its sampler generates, so it takes sampler.KEY=VALUE for an "
                  f"option of the sampler it trained with; got '{key}' (the rest was fixed when it trained)")
    return {key.removeprefix("sampler."): value for key, value in changes.items()}


DEVICE_HELP = "where the model generates: auto (a GPU if there is one), cpu, cuda, cuda:N or mps"


def _load_run(source: str, weights: str, sampler: dict | None = None, device: str = "cpu"):
    from ebmkit.model import EnergyModel
    from ebmkit.training.trainer import resolve_device

    where = resolve_device(device)
    if source.startswith("hf://"):
        from ebmkit.hub import download

        return EnergyModel.from_run(download(source), weights, label=source, sampler=sampler).to(where)
    return EnergyModel.from_run(Path(source), weights, sampler=sampler).to(where)


def _output_kind(text: str) -> str:
    """``-o`` of `ebmkit sample`: "npy", "png", or "dir" (a folder: trailing slash, an existing
    folder, or a name without a suffix)."""
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir() or not path.suffix:
        return "dir"
    if path.suffix in (".npy", ".png"):
        return path.suffix[1:]
    _fail(f"--output must end in .npy or .png, or name a folder (DIR/) for one PNG per image, got '{path.name}'")


def _check_writable(path: Path, folder: bool, what: str) -> None:
    """Fail now, before any work, if ``path`` (a file, or a ``folder``) cannot be written; its
    folder is created if missing."""
    import tempfile

    target = path if folder else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".ebmkit-write-test"):
            pass
    except OSError as exc:
        _fail(f"cannot write {what} '{path}': {exc.strerror or exc}")


def _scatter(x, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
    ax.set_aspect("equal")
    fig.savefig(output, dpi=100)
    plt.close(fig)


@app.command()
def sample(
    run_dir: str = typer.Argument(..., help=MODEL_HELP),
    n: Optional[int] = typer.Option(None, "-n", min=1, help="number of samples (default 1000, or one per --seeds)"),
    output: str = typer.Option("samples.npy", "--output", "-o",
                               help=".npy (the array), .png (2D: a scatter; images: a grid), or DIR/ (images: one PNG each)"),
    seed: int = typer.Option(0, "--seed", help="one seed for the whole draw"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="one seed per sample, e.g. 0-999 or 0,4,10-19: sample i "
                                        "does not depend on the batch size (bitwise on one CPU thread)"),
    batch_size: int = typer.Option(10_000, "--batch", min=1, help="samples generated at a time"),
    weights: str = typer.Option("model.safetensors", "--weights", help="weights file inside the run directory"),
    sets: List[str] = typer.Option([], "--set", "-s", help=SAMPLER_SET_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Generate samples from a trained model."""
    import numpy as np
    import torch

    kind = _output_kind(output)
    _check_writable(Path(output), kind == "dir", "--output")
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None and n is not None and n != len(seed_list):
        _fail(f"-n {n} and --seeds '{seeds}' ({len(seed_list)} seeds) disagree; give one of them")
    n = len(seed_list) if seed_list is not None else n or 1000
    sampler = _sampler_sets(sets)
    try:
        model = _load_run(run_dir, weights, sampler, device)
        is_image = len(model.shape) == 3
        if kind == "dir" and not is_image:
            _fail(f"--output '{output}' is a folder, which holds one PNG per image; this model's points have shape "
                  f"{model.shape}: use .npy or .png")
        if seed_list is not None:
            if coupled := model.batch_coupled():
                err.print(f"[yellow]warning:[/] {coupled[0]} normalises with batch statistics, so these samples are "
                          f"the same only for the same --batch", highlight=False, soft_wrap=True)
            x = model.generate(seeds=seed_list, batch_size=batch_size).cpu()
        else:
            x = model.generate(n, generator=torch.Generator(model.device).manual_seed(seed), batch_size=batch_size).cpu()
        if kind == "npy":
            np.save(output, x.numpy())
        elif kind == "dir":
            from ebmkit.training.plots import save_image_files

            save_image_files(x, Path(output))
        elif is_image:
            from ebmkit.training.plots import save_image_grid

            save_image_grid(x, Path(output))
        else:
            _scatter(x, Path(output))
    except _user_errors() as exc:
        _fail(str(exc))
    err.print(f"wrote {n} samples to {output}", highlight=False, soft_wrap=True)


@app.command("eval")
def evaluate_cmd(
    run_dir: str = typer.Argument(..., help=MODEL_HELP),
    n: Optional[int] = typer.Option(None, "-n", min=2, help="generated and fresh points (default: the recipe's eval.n_samples)"),
    as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON on stdout"),
    weights: str = typer.Option("model.safetensors", "--weights", help="weights file inside the run directory"),
    fid: bool = typer.Option(False, "--fid", help="images: add FID (pytorch-fid's Inception) against --ref"),
    ref: Optional[str] = typer.Option(None, "--ref", help="FID reference: a data set name or JSON spec, a folder of "
                                      "images, or a pytorch-fid .npz of statistics (default: the run's data set)"),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="state dict of pytorch-fid's "
                                                     "Inception (default: its file in torch hub's cache)"),
    fid_samples: Optional[int] = typer.Option(None, "--fid-samples", min=2, help="generated images for FID and "
                                              "FD-FMNIST (default: -n)"),
    fd_fmnist: bool = typer.Option(False, "--fd-fmnist", help="28×28 grey images: add the Fréchet distance in a "
                                   "Fashion-MNIST classifier's features to the test split"),
    sets: List[str] = typer.Option([], "--set", "-s", help=SAMPLER_SET_HELP),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="data to score against, as `train --data` takes it "
                                       "(default: the data the model trained on)"),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
):
    """Evaluate a trained model: SW, MMD, energy AUC, exact 2D log-likelihood, and for images FID
    (--fid) and FD-FMNIST (--fd-fmnist); saves eval.json in a run directory (a pushed model's
    metrics are printed only)."""
    from ebmkit.data import DATASETS, DataError, data_spec_from_cli
    from ebmkit.evaluation import evaluate, generate_samples, image_metrics
    from ebmkit.training.checkpoint import write_json

    if not fid and (ref is not None or inception_weights is not None):
        _fail("--ref and --inception-weights choose how FID is computed; add --fid")
    sampler = _sampler_sets(sets)
    extra = {"sampler": sampler} if sampler else {}  # eval.json says how the samples were drawn
    try:
        model = _load_run(run_dir, weights, sampler, device)
        if not run_dir.startswith("hf://"):  # before the work, not after it
            _check_writable(Path(run_dir) / "eval.json", False, "the scores")
        config = model.recipe.eval if n is None else model.recipe.eval.model_copy(update={"n_samples": n})
        data_spec = model.recipe.data if data is None else data_spec_from_cli(data)
        if data is not None:
            extra["data"] = data_spec
        try:
            dataset = DATASETS.build(data_spec)
        except DataError as exc:
            hint = "" if data is not None else "; score against a copy with --data PATH (a pushed model names its " \
                                               "training file but does not hold it)"
            raise DataError(f"{exc}{hint}") from None
        if tuple(dataset.shape) != tuple(model.shape):
            _fail(f"--data '{data}' has points of shape {tuple(dataset.shape)}; this model's have shape {model.shape}")
        if (fid or fd_fmnist) and len(model.shape) != 3:
            _fail(f"--fid and --fd-fmnist score images; this model's points have shape {model.shape}")
        scorers = {}
        if fid:
            from ebmkit.metrics.fid import FID, resolve_reference

            scorers["fid_ref"] = resolve_reference(ref if ref is not None else data_spec)
            scorers["fid"] = FID(inception_weights, device=model.device)
            extra["fid_ref"] = scorers["fid_ref"].label
        if fd_fmnist:
            from ebmkit.metrics.fmnist import FDFMNIST

            scorers["fd_fmnist"] = FDFMNIST.for_data(data_spec, device=model.device)
        samples = generate_samples(model, config.n_samples, config.seed)
        metrics = evaluate(model, dataset, config, samples=samples)
        if scorers:
            count = fid_samples or config.n_samples
            images = samples if count == config.n_samples else generate_samples(model, count, config.seed)
            metrics.update(image_metrics(images, **scorers))
            extra["fid_samples"] = count
    except _user_errors() as exc:
        _fail(str(exc))
    if not run_dir.startswith("hf://"):
        write_json({"weights": weights, "n_samples": config.n_samples, **extra, **metrics}, Path(run_dir) / "eval.json")
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=f"{model.recipe.name} on {model.recipe.data['name']} ({config.n_samples} samples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, str(value) if isinstance(value, int) else f"{value:.4f}")
    out.print(table)


def _component_text(reg, name: str, fmt: str) -> str:
    """A component's spec with every default filled in; in YAML each option carries its description
    and, for the four slots, the component's declarations."""
    import yaml

    from ebmkit import compose

    entry, spec = reg.get(name), reg.validate(name)
    if fmt == "json":
        return json.dumps(spec, indent=2) + "\n"
    fields = entry.options.model_fields if entry.options else {}
    lines = [f"# {reg.kind} '{name}' ({entry.source}): {entry.summary}"]
    slot = {kind: slot for slot, kind in compose.KINDS.items()}.get(reg.kind)
    if slot:  # its declarations at its defaults (ebmkit.compose)
        provides, needs = compose.declaration(slot, name)
        lines.append(f"# provides: {', '.join(sorted(provides)) or '(nothing)'}")
        lines.append("# needs: " + ("; ".join(f"{n.slot} {n.capability}" + (f" (or {n.instead})" if n.instead else "")
                                             for n in needs) or "(nothing)"))
    for key, value in spec.items():
        text = yaml.safe_dump({key: value}, sort_keys=False, width=1000).rstrip("\n")
        description = fields[key].description if key in fields else None
        if description and "\n" in text:  # a nested group: its description above it
            lines += [f"# {description}", text]
        else:
            lines.append(f"{text}  # {description}" if description else text)
    return "\n".join(lines) + "\n"


@app.command()
def show(
    name: str = typer.Argument(DEFAULT_RECIPE, help="recipe preset, recipe file, or component: a name "
                               "(langevin) or KIND/NAME (schedules/drl) for one of several kinds"),
    fmt: str = typer.Option("yaml", "--format", "-f", help="yaml or json"),
):
    """Print a recipe, every option resolved, or a component's options with their defaults."""
    from ebmkit.recipes import Recipe
    from ebmkit.registry import RECIPES, REGISTRIES

    if fmt not in ("yaml", "json"):
        _fail(f"--format must be 'yaml' or 'json', got '{fmt}'")
    components = {kind: reg for kind, reg in REGISTRIES.items() if reg is not RECIPES}
    is_file = name.endswith((".json", ".yaml", ".yml"))
    kind, sep, bare = ("", "", name) if is_file else name.partition("/")
    if sep and kind == "recipes":
        name, sep = bare, ""
    try:
        if sep and kind in components:
            print(_component_text(components[kind], bare, fmt), end="")
            return
        matches = [reg for reg in components.values() if not is_file and name not in RECIPES.names()
                   and name in reg.names()]
        if len(matches) == 1:
            print(_component_text(matches[0], name, fmt), end="")
            return
        if matches:  # a name several kinds share (a recipe's name is the recipe): each of them
            print(json.dumps({reg.kind: reg.validate(name) for reg in matches}, indent=2) if fmt == "json"
                  else "\n".join(_component_text(reg, name, fmt) for reg in matches), end="\n" if fmt == "json" else "")
            return
        recipe = Recipe.load(name) if is_file else Recipe.from_name(name)
    except _user_errors() as exc:
        found = not is_file and any(name in reg.names() for reg in components.values())  # found, but broken
        hint = "" if is_file or sep or found else "; a component is shown by its name or KIND/NAME (see `ebmkit list`)"
        _fail(str(exc) + hint)
    print(recipe.to_yaml() if fmt == "yaml" else recipe.model_dump_json(indent=2), end="" if fmt == "yaml" else "\n")


@app.command("list")
def list_cmd(
    kind: Optional[str] = typer.Argument(None, help="one kind: schedules, energies, networks, samplers, divergences, "
                                         "datasets, recipes, loggers, couplings, temperatures"),
    pattern: str = typer.Option("*", "--filter", help="shell-style name filter, e.g. 'ddpm*'"),
    compatible: bool = typer.Option(False, "--compatible", help="print which schedules × energies × samplers × "
                                    "divergences assemble (each at its defaults) instead"),
):
    """List registered components: name, kind and where each comes from."""
    from ebmkit.registry import REGISTRIES, ComponentError, registry  # importing ebmkit registered the built-ins

    if compatible:
        if kind or pattern != "*":
            _fail("--compatible prints every kind's components: it takes no KIND and no --filter")
        return _print_matrix()
    try:
        kinds = [registry(kind)] if kind else list(REGISTRIES.values())
    except ComponentError as exc:
        _fail(str(exc))
    table = Table()
    for col in ("name", "kind", "from", "description"):
        table.add_column(col)
    broken = 0
    for reg in kinds:
        for row in reg.list(pattern):
            if row["error"]:
                broken += 1
                table.add_row(row["name"], row["kind"], row["source"], f"[red]broken: {row['error']}[/]")
            else:
                table.add_row(row["name"], row["kind"], row["source"], row["summary"])
    out.print(table)
    if broken:
        err.print(f"[yellow]{broken} plugin component(s) failed to load; the rest work[/]")


def _value(value) -> str:
    """A recipe option in a table cell (its brackets are text, not Rich markup)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else escape(str(value))


@app.command("runs")
def runs_cmd(
    paths: Optional[List[Path]] = typer.Argument(None, help="run directories, or folders of runs (default: runs/)"),
    compare: bool = typer.Option(False, "--compare", help="compare the runs given: where their recipes differ, their "
                                 "last metrics, and their metric curves side by side in one PNG"),
    output: Path = typer.Option(Path("compare.png"), "--output", "-o", help="the PNG of --compare's curves"),
):
    """A table of runs: recipe, data, steps and last metrics (from each run's config.json,
    checkpoint and stats.jsonl); with --compare, how two or more runs differ."""
    from ebmkit import runs

    try:
        found = [runs.load(path) for path in runs.find(paths or [Path("runs")])]
        if compare and len(found) < 2:
            _fail(f"--compare takes two or more runs; {len(found)} found in {', '.join(map(str, paths or ['runs']))}")
        if not compare:
            if not found:
                _fail(f"no runs in {', '.join(map(str, paths or ['runs']))} (a run is a folder with the config.json "
                      "that ebmkit train writes)")
            return _print_runs(found)
        labels = [str(run.path) for run in found]
        if len(set(run.path.name for run in found)) == len(found):
            labels = [run.path.name for run in found]
        _check_writable(output, False, "--output")
        table = Table(title="where the recipes differ", title_justify="left")
        for col in ("option", *labels):
            table.add_column(escape(col))
        different = runs.differences(found)
        for key, values in different:
            table.add_row(key, *(_value(v) for v in values))
        if different:
            out.print(table)
        else:
            out.print("the recipes are the same", highlight=False)
        metrics = runs.compare_figure(found, output, labels)
        table = Table(title="last values (step)", title_justify="left")
        for col in ("metric", *labels):
            table.add_column(escape(col), justify="left" if col == "metric" else "right")
        for metric in metrics:
            table.add_row(metric, *(f"{last[1]:.4g} ({last[0]})" if (last := run.last(metric)) else "—"
                                    for run in found))
        out.print(table)
    except (runs.RunsError, OSError, ValueError) as exc:
        _fail(str(exc))
    err.print(f"wrote {output}: {len(metrics)} metrics, one panel each", highlight=False, soft_wrap=True)


def _print_runs(found) -> None:
    table = Table()
    for col in ("run", "recipe", "data", "steps", "loss", "eval", "loggers"):
        table.add_column(col, justify="right" if col in ("steps", "loss") else "left")
    for run in found:
        train = run.recipe.get("train", {})
        metric = train.get("eval_metric", "sw")
        loss, evaluated = run.last("loss"), run.last(metric)
        table.add_row(escape(str(run.path)), escape(run.recipe.get("name", "?")), escape(run.data), f"{run.step or 0}/{train.get('steps', '?')}",
                      "—" if loss is None else f"{loss[1]:.4g}",
                      "—" if evaluated is None else f"{metric} {evaluated[1]:.4g} @{evaluated[0]}",
                      ", ".join(spec["name"] for spec in train.get("loggers", [{"name": "jsonl"}])))
    out.print(table)


def _print_matrix() -> None:
    from ebmkit.compose import matrix

    names, cells = matrix()

    table = Table(title="What assembles, every component at its defaults: the schedules that work with each "
                        "sampler, divergence and energy (— none)", title_justify="left")
    for col in ("sampler", "divergence", *names["energy"]):
        table.add_column(col)
    def cell(schedules: list[str]) -> str:
        return "—" if not schedules else "all" if schedules == names["schedule"] else ", ".join(schedules)

    for (sampler, divergence), by_energy in cells.items():
        table.add_row(sampler, divergence, *(cell(by_energy.get(e, [])) for e in names["energy"]))
    out.print(table)
    pairs = len(names["sampler"]) * len(names["divergence"])
    out.print(f"{len(cells)} of {pairs} sampler × divergence pairs assemble; schedules: {', '.join(names['schedule'])}. "
              "Options can change a cell (e.g. sampler.b_square gives Langevin a step of its own): an assembly "
              "that does not work says what it lacks and who provides it.", highlight=False)


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: every recipe on one footing.")
app.add_typer(bench_app, name="bench")


def _names(values: list[str]) -> list[str]:
    """Options given repeated (--data a --data b) or comma-separated (--data a,b)."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@bench_app.command("toy")
def bench_toy(
    recipes: List[str] = typer.Option(["drl", "cdrl", "ddaebm", "dxmi"], "--recipes", "-r", help="recipe presets, "
                                      "comma-separated or repeated"),
    data: List[str] = typer.Option(["8gaussians", "25gaussians", "checkerboard", "pinwheel", "swissroll"], "--data",
                                   "-d", help="2D data sets or .npy/.csv files of 2D points, comma-separated or "
                                   "repeated"),
    seeds: int = typer.Option(3, "--seeds", min=1, help="seeds 0…N−1 per cell"),
    sets: List[str] = typer.Option([], "--set", "-s", help="override a field of every recipe: KEY=VALUE, repeatable"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="runs at a time (one torch thread each)"),
    out_dir: Path = typer.Option(Path("bench-toy"), "--out", "-o", help="folder for toy.md, toy.json, toy.png, runs/"),
    fresh: bool = typer.Option(False, "--fresh", help="train every cell again, even one already finished in --out"),
):
    """Train every recipe on every 2D set over seeds; write a table (SW, MMD, energy AUC, exact
    log-likelihood, mean ± std), its JSON and a picture of the learned densities. Cells already
    finished in --out with the same recipe are read back, not trained again."""
    from ebmkit.bench import run_toy
    from ebmkit.data import DATASETS, data_spec_from_cli

    names, datasets = _names(recipes), _names(data)
    try:
        for d in datasets:
            if DATASETS.build(data_spec_from_cli(d)).dim != 2:
                _fail(f"bench toy takes 2D data sets; '{d}' is not one")
        command = "ebmkit bench toy " + " ".join(
            [f"--recipes {','.join(names)}", f"--data {','.join(datasets)}", f"--seeds {seeds}"]
            + [f"--set {s}" for s in sets] + ([f"--jobs {jobs}"] if jobs > 1 else []))
        run_toy(names, datasets, seeds, out_dir, changes=parse_sets(sets), jobs=jobs, command=command,
                log=lambda line: err.print(line, highlight=False, soft_wrap=True), fresh=fresh)
    except _user_errors() as exc:
        _fail(str(exc))
    err.print(f"wrote {out_dir / 'toy.md'}, toy.json and toy.png", highlight=False, soft_wrap=True)


hub_app = typer.Typer(no_args_is_help=True, help="Share models on the Hugging Face Hub (token: HF_TOKEN or `hf auth login`).")
app.add_typer(hub_app, name="hub")


@hub_app.command("push")
def hub_push(
    run_dir: Path = typer.Argument(..., help="a run directory written by `ebmkit train`"),
    repo_id: str = typer.Argument(..., help="org/name on the Hub"),
    raw: bool = typer.Option(False, "--raw", help="push the last checkpoint's raw weights instead of the EMA ones"),
    private: bool = typer.Option(False, "--private", help="create the repo private (an existing repo keeps its visibility)"),
    revision: Optional[str] = typer.Option(None, "--revision", help="branch to commit to (created if missing; default main)"),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="commit message"),
):
    """Push a trained model: weights, config.json (the recipe), a model card and density.png."""
    from ebmkit.model import EnergyModel
    from ebmkit.training.checkpoint import find_checkpoint

    try:
        weights = "model.safetensors"
        if raw:
            found = find_checkpoint(run_dir / "checkpoint")
            if found is None:
                _fail(f"--raw: '{run_dir}' has no checkpoint/ with raw weights")
            weights = str(found.relative_to(run_dir) / "model.safetensors")
        model = EnergyModel.from_run(run_dir, weights)
        commit = model.push_to_hub(repo_id, private=private or None, revision=revision, commit_message=message)
    except _user_errors() as exc:
        _fail(str(exc))
    err.print(f"pushed {run_dir} ({model.weights_kind} weights) to {repo_id}, commit {commit}", soft_wrap=True)


@hub_app.command("pull")
def hub_pull(
    repo_id: str = typer.Argument(..., help="org/name on the Hub (or hf://org/name@revision)"),
    revision: Optional[str] = typer.Option(None, "--revision", help="branch, tag or commit id (default main)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="copy the files here (default: the Hub cache only)"),
):
    """Download a pushed model and check that it loads; prints the folder holding it."""
    from ebmkit.hub import download
    from ebmkit.model import EnergyModel

    try:
        folder = download(repo_id, revision=revision, out=out_dir)
        model = EnergyModel.from_run(folder, label=repo_id)
    except _user_errors() as exc:
        _fail(str(exc))
    err.print(f"{repo_id}: recipe '{model.recipe.name}' on '{model.recipe.data['name']}' ({model.weights_kind} weights)",
              soft_wrap=True, highlight=False)
    print(folder)


@hub_app.command("publish-zoo")
def hub_publish_zoo(
    org: str = typer.Argument(..., help="the Hub user or organisation the models go to, as ORG/<recipe>-<data>"),
    bench_dir: Path = typer.Option(Path("bench-toy"), "--from", help="an `ebmkit bench toy` output: its finished "
                                   "seed-0 runs are published, missing ones are trained into it first"),
    recipes: List[str] = typer.Option([], "--recipes", "-r", help="2D presets (default: every registered one)"),
    data: List[str] = typer.Option(["8gaussians", "25gaussians", "checkerboard", "pinwheel", "swissroll"], "--data",
                                   "-d", help="toy sets, comma-separated or repeated"),
    sets: List[str] = typer.Option([], "--set", "-s", help="the `bench toy --set` changes the benchmark was run with: "
                                   "a cell counts only if it trained the preset with exactly these"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be trained and pushed; push nothing"),
    yes: bool = typer.Option(False, "--yes", "-y", help="publish without asking"),
):
    """Publish the model zoo: each 2D preset on each toy set, evaluated, pushed with its card as
    ORG/<recipe>-<data>; a repo whose card already records the same recipe and metrics is skipped.
    Writes the zoo's table to BENCH_DIR/zoo.md."""
    from ebmkit import zoo
    from ebmkit.model import EnergyModel

    names = _names(recipes) or None
    try:
        models = zoo.plan(org, names, _names(data), bench_dir, parse_sets(sets))
        to_train = [m for m in models if m.to_train]
        for m in models:
            source = (f"train {m.steps:,} steps into {m.run_dir}" if m.to_train else
                      f"diverged at step {m.diverged_at} in {m.run_dir}, not published" if m.diverged else m.run_dir)
            err.print(f"{m.repo_id} ← {source}", highlight=False, soft_wrap=True)
        if dry_run:
            err.print(f"dry run: {len(models)} models, {len(to_train)} to train first; nothing pushed", soft_wrap=True)
            return
        if not yes and not typer.confirm(f"publish {len(models)} models to '{org}' on {_hub_endpoint()}?"):
            _fail("not published (pass --yes to publish without asking)")
        pushed = 0
        for m in models:
            if m.to_train:
                err.print(f"training {m.recipe} on {m.data} …", highlight=False, soft_wrap=True)
                zoo.train(m)
            if m.diverged:  # one preset that cannot train on one set does not hold the zoo back
                err.print(f"[yellow]warning:[/] {m.repo_id}: not published, its run diverged at step {m.diverged_at}: "
                          f"{escape(m.diverged)}", highlight=False, soft_wrap=True)
                continue
            model = EnergyModel.from_run(m.run_dir)
            if zoo.current(m, model):
                err.print(f"{m.repo_id}: up to date", highlight=False, soft_wrap=True)
                continue
            commit = model.push_to_hub(m.repo_id, commit_message=f"ebmkit zoo: {m.recipe} on {m.data}",
                                       command=zoo.command(m))
            pushed += 1
            err.print(f"{m.repo_id}: pushed, commit {commit}", highlight=False, soft_wrap=True)
        command = (f"ebmkit hub publish-zoo {org} --from {bench_dir}" + (f" --recipes {','.join(names)}" if names else "")
                   + "".join(f" --set {item}" for item in sets))
        (bench_dir / "zoo.md").write_text(zoo.table(models, command))
    except (*_user_errors(), zoo.ZooError) as exc:
        _fail(str(exc))
    diverged = sum(bool(m.diverged) for m in models)
    err.print(f"published {pushed} of {len(models)} models, {len(models) - pushed - diverged} up to date"
              + (f", {diverged} diverged" if diverged else "") + f"; table: {bench_dir / 'zoo.md'}",
              highlight=False, soft_wrap=True)


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {escape(' '.join(str(message).split()))}", highlight=False, soft_wrap=True)


def main() -> None:
    """The `ebmkit` console script and `python -m ebmkit`. Click's own usage errors (an unknown
    option, `--steps 0`) get the one line every other error gets, not a usage box; a warning is
    one line too. Ctrl-C exits 130 (typer's code; training has said which checkpoint it keeps)."""
    import warnings

    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)  # a command's return (None) or a typer.Exit's code
    except NoArgsIsHelpError as exc:  # `ebmkit` or `ebmkit hub` alone: the help
        exc.show()
        code = exc.exit_code
    except ClickException as exc:
        hint = f"; see '{exc.ctx.command_path} --help'" if getattr(exc, "ctx", None) else ""
        _print_error(exc.format_message().rstrip(".") + hint)
        code = exc.exit_code
    except typer.Abort:
        _print_error("aborted")
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
