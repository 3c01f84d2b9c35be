"""The model card (README.md) of a pushed model, generated from its config and last evaluation.

The YAML front matter is what the Hub indexes: ``library_name: ebmkit`` groups the models,
the tags make them searchable. The body says what the model is, how to load it, which
packages it needs and how it scored, so a reader never has to open config.json.
"""

from __future__ import annotations

import hashlib
import json
import math

import yaml
from huggingface_hub import ModelCard, ModelCardData

from ebmkit.registry import BUILTIN, IN_PROCESS

METRIC_NAMES = {
    "sw": "sliced Wasserstein-2 to fresh data (lower is better)",
    "mmd": "MMD to fresh data (lower is better)",
    "energy_auc": "energy AUC, held-out data vs uniform noise",
    "true_energy_auc": "the same AUC for the true density (ceiling)",
    "grid_log_likelihood": "exact log-likelihood of held-out data on a 2D grid (nats)",
    "true_log_likelihood": "the true density's log-likelihood of the same data (ceiling)",
    "samples_finite": "1 if every generated sample is finite",
    "fid": "FID (pytorch-fid's Inception) to the reference images (lower is better)",
    "fd_fmnist": "Fréchet distance in a Fashion-MNIST classifier's features to the test split (lower is better)",
    "generation_evaluations": "∇ₓE evaluations per generated sample (NFE)",
}


def card_record(config: dict, metrics: dict | None) -> dict:
    """What a card's front matter records of its model, under the key ``ebmkit``: the SHA-256 of
    the recipe (as config.json holds it) and the finite numeric metrics of its evaluation. The zoo
    skips a repo whose card records the same (`ebmkit.zoo`)."""
    recipe = json.dumps(config["recipe"], sort_keys=True).encode()
    numbers = {k: v for k, v in (metrics or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return {"recipe_sha256": hashlib.sha256(recipe).hexdigest(), "metrics": numbers}


def model_card(config: dict, repo_id: str | None, *, metrics: dict | None = None,
               picture: str | None = None, command: str | None = None) -> ModelCard:
    """``config`` is the repo's config.json; ``repo_id`` None for a folder not yet on the Hub;
    ``metrics`` an ``ebmkit eval`` eval.json of the same weights (or None); ``picture`` the
    image file uploaded beside the card; ``command`` the command that trained it, where known."""
    recipe, provenance = config["recipe"], config.get("provenance", {})
    data = recipe["data"]["name"]
    title = repo_id.split("/")[-1] if repo_id else f"{recipe['name']}-{data}"
    repo_id = repo_id or "ORG/NAME"
    sources = {p.get("source", BUILTIN) for p in provenance.values()}
    plugins = sorted(s for s in sources if s != BUILTIN and not s.startswith(IN_PROCESS))
    scripts = sorted(s.partition(":")[2].strip() for s in sources if s.startswith(IN_PROCESS))
    tags = ["ebmkit", "energy-based-model", "pytorch", f"recipe:{recipe['name']}", f"data:{data}"]
    card_data = ModelCardData(
        library_name="ebmkit",
        tags=tags,
        pipeline_tag="unconditional-image-generation" if len(config["shape"]) == 3 else None,
        ebmkit=card_record(config, metrics),
    )
    weights = "EMA weights" if config.get("weights", "ema") == "ema" else "raw (non-averaged) weights"
    lines = [
        f"# {title}",
        "",
        f"An energy-based model trained with ebmkit's `{recipe['name']}` recipe"
        + (f" ({recipe['description']})" if recipe.get("description") else "")
        + f" on the `{data}` data set for {recipe['train']['steps']} iterations; these are its {weights}.",
        "",
    ]
    if picture:
        lines += [f"![model density and samples]({picture})", ""]
    install = " ".join(["torch-ebmkit", *plugins])
    lines += ["## Use", ""]
    if scripts:  # no package installs these: the code that registered them has to be at hand
        lines += [f"Some components were registered in-process by {', '.join(f'`{m}`' for m in scripts)}: "
                  "import that code before loading, or the load names what is missing.", ""]
    lines += [
        "```bash",
        f"pip install {install}",
        f"ebmkit sample hf://{repo_id} -n 1000 -o samples.png",
        "```",
        "",
        "```python",
        "from ebmkit import EnergyModel",
        "",
        f'model = EnergyModel.from_pretrained("{repo_id}")',
        "x = model.generate(1000)        # samples",
        "e = model.data_energy(x)        # E(x): lower = more probable",
        "```",
        "",
        "## Components",
        "",
        "| part | name | from |",
        "| --- | --- | --- |",
    ]
    for field, origin in provenance.items():
        lines.append(f"| {field} | `{origin['name']}` | {origin.get('source', BUILTIN)} |")
    lines += ["", "## Evaluation", ""]
    if metrics:
        n = metrics.get("n_samples")
        lines += [f"`ebmkit eval` on these weights" + (f", {n} generated and {n} fresh points:" if n else ":"), "",
                  "| metric | value | meaning |", "| --- | --- | --- |"]
        for key, value in metrics.items():
            if key in ("weights", "n_samples", "fid_samples") or not isinstance(value, (int, float)):
                continue
            shown = str(value) if isinstance(value, int) else f"{value:.4f}"
            lines.append(f"| {key} | {shown} | {METRIC_NAMES.get(key, '')} |")
    else:
        lines.append(f"Not evaluated before it was pushed; `ebmkit eval hf://{repo_id}` computes the metrics.")
    if command:
        lines += ["", "## Training", "", "Trained with", "", "```bash", command, "```"]
    lines += [
        "",
        "## Recipe",
        "",
        f"Saved with ebmkit {config.get('ebmkit_version', '?')} and torch {config.get('torch_version', '?')}; "
        "`config.json` holds the same, with the data shape.",
        "",
        "```yaml",
        yaml.safe_dump(recipe, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))
