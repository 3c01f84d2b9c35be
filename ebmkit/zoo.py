"""The model zoo: every registered 2D preset on each toy set, trained, evaluated and published to
the Hub as ``ORG/<recipe>-<data>`` with its card (`ebmkit hub publish-zoo`).

A zoo model is the seed-0 run of a ``ebmkit bench toy`` cell: read from a finished benchmark
(``--from``), or trained and evaluated here the same way (`ebmkit.bench.train_and_score`), so the
card's metrics are the benchmark's. The card records the recipe's digest and the metrics in its
front matter (`ebmkit.hub.card`); a repo whose card already records the same ones is skipped, so
publishing again pushes only what changed. A preset joins when its data set is one of the toy
sets (`ebmkit.data.toy`): new recipes, plugins' included, join by themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TOY_SETS = ("8gaussians", "25gaussians", "checkerboard", "pinwheel", "swissroll")
SEED = 0
TABLE_METRICS = (("sw", "SW", 3), ("energy_auc", "AUC", 3), ("grid_log_likelihood", "log-lik.", 2))


class ZooError(ValueError):
    """A zoo that cannot be built as asked (an unknown or non-2D preset, an unknown toy set)."""


@dataclass
class ZooModel:
    """One model of the zoo: where its run is (or will be) and where it goes."""

    recipe: str
    data: str
    run_dir: Path
    repo_id: str
    finished: bool  # the run exists, evaluated; otherwise it is trained first
    steps: int  # the preset's training budget, shown before anything is trained
    diverged: str | None = None  # why the divergence watch stopped its run: it is not published
    diverged_at: int | None = None
    changes: dict = field(default_factory=dict)  # the `--set` changes its benchmark cell was trained with

    @property
    def to_train(self) -> bool:
        """Neither finished nor known to diverge: publishing trains it first."""
        return not self.finished and self.diverged is None

    @property
    def metrics(self) -> dict | None:
        path = self.run_dir / "eval.json"
        return json.loads(path.read_text()) if path.is_file() else None


def presets_2d() -> list[str]:
    """Registered presets whose data set is a toy set (2D, made on the fly)."""
    from ebmkit.data import DATASETS
    from ebmkit.data.toy import ToyDataset
    from ebmkit.recipes import Recipe
    from ebmkit.registry import ComponentError, registry

    names = []
    for name in registry("recipes").names():
        try:
            data = Recipe.from_name(name).data
            if issubclass(DATASETS.get(data["name"]).obj, ToyDataset):
                names.append(name)
        except (ComponentError, ValueError):  # a broken plugin's preset is listed by `ebmkit list`
            continue
    return names


def plan(org: str, recipes: list[str] | None, datasets: list[str], bench_dir: Path,
         changes: dict | None = None) -> list[ZooModel]:
    """The zoo's models, each with its run under ``bench_dir/runs`` (a `bench toy` output's layout),
    the presets with ``changes`` (`--set`, as the benchmark was run with) applied."""
    from ebmkit.bench import CELL, finished_cell, recipe_for

    changes = changes or {}

    available = presets_2d()
    recipes = recipes or available
    unknown = [r for r in recipes if r not in available]
    if unknown:
        raise ZooError(f"not a 2D preset: {', '.join(unknown)}; the zoo's presets are {', '.join(available)}")
    odd = [d for d in datasets if d not in TOY_SETS]
    if odd:
        raise ZooError(f"the zoo holds the toy sets {', '.join(TOY_SETS)}; not {', '.join(odd)}")
    models = []
    for recipe in recipes:
        for data in datasets:
            run = bench_dir / "runs" / f"{recipe}-{data}-s{SEED}"
            resolved = recipe_for(recipe, data, SEED, changes)
            # a cell counts only if it trained this very recipe: one of an older preset is trained again
            row = finished_cell(run, resolved)
            finished = (row is not None and "diverged" not in row and (run / "model.safetensors").is_file()
                        and (run / "eval.json").is_file())
            model = ZooModel(recipe, data, run, f"{org}/{recipe}-{data}", finished, resolved.train.steps,
                             changes=changes)
            # a cell of this recipe that the divergence watch stopped would stop the same way again
            if row is not None and "diverged" in row:
                model.diverged, model.diverged_at = row["diverged"], row.get("diverged_at")
            models.append(model)
    return models


def train(model: ZooModel) -> None:
    """Train and evaluate a zoo model as `ebmkit bench toy` does its seed-0 cell; a run the
    divergence watch stops is recorded as such (``model.diverged``) and not published."""
    from ebmkit.bench import train_and_score

    row = train_and_score(model.recipe, model.data, SEED, model.changes, str(model.run_dir))
    model.diverged, model.diverged_at = row.get("diverged"), row.get("diverged_at")
    model.finished = model.diverged is None


def command(model: ZooModel) -> str:
    """The command that trains the model as its benchmark cell did (`ebmkit.bench.recipe_for`)."""
    sets = "".join(f" --set {key}={value if isinstance(value, str) else json.dumps(value, separators=(',', ':'))}"
                   for key, value in model.changes.items())
    return (f"ebmkit train --recipe {model.recipe} --data {model.data}{sets} --set train.seed={SEED} "
            "--set train.threads=1")


def current(model: ZooModel, energy_model) -> bool:
    """Whether the Hub repo's card already records this model's recipe and metrics."""
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    from ebmkit.hub.card import card_record
    from ebmkit.hub.repo import hub_errors

    with hub_errors(model.repo_id, "main"):
        try:
            card = ModelCard.load(model.repo_id)
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
            return False  # not published yet
        except HfHubHTTPError as exc:
            if getattr(exc.response, "status_code", None) != 404:
                raise
            return False
    recorded = card.data.to_dict().get("ebmkit")
    return recorded == card_record(energy_model.config(shared=True), model.metrics)


def table(models: list[ZooModel], command: str) -> str:
    """The zoo as a markdown table, from the metrics its cards record."""
    lines = ["| model | recipe | data | " + " | ".join(label for _, label, _ in TABLE_METRICS) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in TABLE_METRICS) + " |"]
    for m in models:
        metrics = {} if m.diverged else (m.metrics or {})
        cells = [f"{metrics[key]:.{digits}f}" if isinstance(metrics.get(key), (int, float)) else "—"
                 for key, _, digits in TABLE_METRICS]
        model = f"diverged at step {m.diverged_at}, not published" if m.diverged else f"`{m.repo_id}`"
        lines.append(f"| {model} | {m.recipe} | {m.data} | " + " | ".join(cells) + " |")
    return f"`{command}`\n\n" + "\n".join(lines) + "\n"
