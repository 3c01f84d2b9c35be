"""`EnergyModel`: the built components of a recipe, as one module to train, sample and score."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ebmkit import compose
from ebmkit._version import __version__
from ebmkit.data.transform import Standardize
from ebmkit.files import CheckpointError, read_tensors, run_config, weights_kind
from ebmkit.networks import build_network
from ebmkit.random import PerSampleGenerator
from ebmkit.registry import DIVERGENCES, ENERGIES, SAMPLERS, SCHEDULES


IDENTITY = "ebmkit.model"  # weights-file metadata: what the weights mean (`identity`)
COMPONENT_FIELDS = ("schedule", "network", "energy", "sampler", "divergence")


def identity(recipe: dict, shape, transform: dict | None) -> dict:
    """What a set of weights means: the components and network they were trained as, the data
    shape and the data transform. The rest of a recipe (where the data lives, training options)
    does not change what the weights compute."""
    return {**{k: recipe[k] for k in COMPONENT_FIELDS}, "shape": list(shape), "data_transform": transform}


def _differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys at which two JSON-like values differ, among the keys both have (an option
    added or dropped by another ebmkit version is not a difference)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) & set(b)) for d in _differences(a[k], b[k], f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def without_local_paths(recipe: dict) -> dict:
    """A recipe as it is shared: data options naming this machine's files keep only the file
    name (a trained run records absolute paths)."""
    data = recipe["data"]
    if isinstance(data, dict):
        data = {k: Path(v).name if isinstance(v, str) and Path(v).is_absolute() else v for k, v in data.items()}
    return {**recipe, "data": data}


class EnergyModel(nn.Module):
    """Schedule + energy (network inside) + sampler + divergence, assembled from a recipe.

    ``shape`` is the shape of one data point, e.g. ``(2,)``. ``transform`` (an
    `ebmkit.data.transform.Standardize`, or None) maps the data's units to the model's: the
    components work in the model's, while `generate`, `data_energy` and everything built on
    them (evaluation, pictures, `ebmkit sample`) speak the data's.
    """

    def __init__(self, recipe, shape: tuple[int, ...], transform: Standardize | None = None):
        super().__init__()
        # a recipe is checked when it is made; this catches one changed without validation
        # (model_copy, or a failed assignment, which pydantic leaves in place)
        compose.check({slot: getattr(recipe, slot) for slot in compose.SLOTS})
        self.recipe, self.shape = recipe, tuple(shape)
        # where the weights came from; `push_to_hub` takes the run's eval.json and density.png
        self.source_dir: Path | None = None
        self.weights_kind = "ema"  # "ema" or "raw": said in config.json and the model card
        # None: a single-level recipe (compose: needs_schedule); its network embeds the one level 0
        self.schedule = None if recipe.schedule is None else SCHEDULES.build(recipe.schedule)
        energy_cls = ENERGIES.get(recipe.energy["name"]).obj
        num_levels = 1 if self.schedule is None else self.schedule.num_levels
        network = build_network(recipe.network, shape=self.shape, num_levels=num_levels,
                                out_dim=math.prod(self.shape) if energy_cls.network_output == "data" else 1)
        self.energy = ENERGIES.build(recipe.energy, network=network, schedule=self.schedule)
        self.divergence = DIVERGENCES.build(recipe.divergence, schedule=self.schedule)
        self.sampler = SAMPLERS.build(recipe.sampler, schedule=self.schedule, shape=self.shape, energy=self.energy,
                                      data_energy=self.divergence.data_energy)
        self.transform = transform

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def generate(self, n: int | None = None, generator: torch.Generator | None = None, batch_size: int = 10_000,
                 seeds: Sequence[int] | None = None) -> Tensor:
        """n samples from the prior through the sampler's full chain, in batches of ``batch_size``,
        in the data's units.

        With ``seeds`` (instead of n and generator) sample i is drawn from its own stream seeded
        with seeds[i], so it is the same whatever the batch size or the other seeds.
        """
        chunks = []
        if seeds is not None:
            seeds = list(seeds)
            batch_size = min(batch_size, len(seeds))
            for i in range(0, len(seeds), batch_size):
                chunk = seeds[i:i + batch_size]
                # a short last chunk is padded to full size: BLAS picks its kernels by the number of
                # rows (1–2 rows take a gemv-like path), and a different kernel rounds differently
                padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
                x = self.sampler.generate(len(padded), self.energy, PerSampleGenerator(padded, self.device))
                chunks.append(x[:len(chunk)])
        else:
            chunks = [self.sampler.generate(min(batch_size, n - start), self.energy, generator)
                      for start in range(0, n, batch_size)]
        x = torch.cat(chunks)
        return x if self.transform is None else self.transform.inverse(x)

    def trained_networks(self) -> dict[str, nn.Module]:
        """The modules a training step trains, by name: the energy, and each child of the sampler
        with trainable parameters (DDAEBM's generator and encoder, CDRL's initializer, DxMI's policy)."""
        networks = {"energy": self.energy}
        for name, module in self.sampler.named_children():
            if any(p.requires_grad for p in module.parameters()):
                networks[f"sampler.{name}"] = module
        return networks

    def batch_coupled(self) -> list[str]:
        """Modules whose output for one sample depends on the rest of its batch: BatchNorm that
        normalises with batch statistics (DDAEBM's 2D generator, as in its reference code).
        Per-sample seeds cannot make such a model's samples independent of the batch size."""
        return [name for name, m in self.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)]

    def data_energy(self, x: Tensor) -> Tensor:
        """E of clean data x, in the data's units: exp(−data_energy) is the model's unnormalised
        density of x. Through a transform z = T(x): E_x(x) = E_z(T(x)) − log |det ∂z/∂x|."""
        if self.transform is None:
            return self.divergence.data_energy(self.energy, x)
        return self.divergence.data_energy(self.energy, self.transform(x)) - self.transform.log_det

    # -- files --------------------------------------------------------------------------
    def config(self, shared: bool = False) -> dict:
        """``config.json`` of a run or (``shared``) of a Hub repo, which names no local path: all it
        takes to rebuild the model, no code."""
        recipe = self.recipe.model_dump(mode="json")
        return {
            "recipe": without_local_paths(recipe) if shared else recipe,
            "provenance": self.recipe.provenance(),
            "shape": list(self.shape),
            "data_transform": None if self.transform is None else self.transform.to_config(),
            "weights": self.weights_kind,
            "ebmkit_version": __version__,
            "torch_version": torch.__version__,
        }

    def weights_metadata(self) -> dict[str, str]:
        """Metadata stored in an exported weights file: its `identity`, which `from_run` compares
        with the config.json beside it."""
        config = self.config()
        return {IDENTITY: json.dumps(identity(config["recipe"], self.shape, config["data_transform"]), sort_keys=True)}

    @classmethod
    def from_run(cls, run_dir: str | Path, weights: str = "model.safetensors", *, label: str | None = None,
                 sampler: dict | None = None) -> "EnergyModel":
        """Rebuild a trained model from a run directory or a downloaded Hub repo
        (``config.json`` + safetensors weights; nothing is unpickled). ``label`` names the
        model in errors (default: the config.json path). ``sampler`` changes how the trained
        model generates, as dotted keys under the sampler (``{"n_steps": 60}``, ``{"denoise": True}``);
        a change that alters the sampler's parameters is refused when the weights are loaded."""
        from ebmkit.recipes import Recipe

        run_dir = Path(run_dir)
        config = run_config(run_dir)
        where = label or str(run_dir / "config.json")
        recipe = Recipe.from_config(config, where=where)
        saved = identity(recipe.model_dump(mode="json"), config.get("shape") or [], config.get("data_transform"))
        if sampler:
            recipe = recipe.override({f"sampler.{key}": value for key, value in sampler.items()})
        if not isinstance(config.get("shape"), list):
            raise CheckpointError(f"'{run_dir / 'config.json'}' has no data shape (a list under \"shape\"); "
                                  "it was not written by ebmkit's trainer")
        try:
            transform = Standardize.from_config(config.get("data_transform"))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"'{run_dir / 'config.json'}' has an unusable data_transform: {exc}") from None
        model = cls(recipe, tuple(config["shape"]), transform)
        state, metadata = read_tensors(run_dir / weights)
        if IDENTITY in metadata:  # exports record what they mean; checkpoint files do not
            trained = json.loads(metadata[IDENTITY])
            if changed := _differences(saved, trained):
                raise CheckpointError(f"'{where}' does not match the weights '{run_dir / weights}': "
                                      f"{', '.join(changed[:3])} differ from what the weights were trained with "
                                      "(was config.json edited?); to generate differently use --set sampler.KEY=VALUE")
        if "n_averaged" in state:  # the trainer's EMA (checkpoint/ema.safetensors): an AveragedModel
            state = {k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged"}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
            raise CheckpointError(f"weights '{run_dir / weights}' do not fit the model of {run_dir / 'config.json'}: "
                                  f"{first[:300]}") from None
        model.source_dir = run_dir
        model.weights_kind = "raw" if weights_kind(weights) == "raw" else config.get("weights", "ema")
        return model.eval()

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | Path, revision: str | None = None,
                        token: str | bool | None = None) -> "EnergyModel":
        """A model pushed with `push_to_hub`: a Hub repo id (``org/name``, ``hf://org/name@rev``)
        or a local directory. Downloads through huggingface_hub's cache (``HF_HUB_OFFLINE=1``
        reads the cache only)."""
        from ebmkit.hub import download

        local = Path(repo_id_or_path)
        if not str(repo_id_or_path).startswith("hf://") and local.is_dir():
            return cls.from_run(local)
        folder = download(str(repo_id_or_path), revision=revision, token=token)
        return cls.from_run(folder, label=str(repo_id_or_path))

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write what a Hub repo holds: weights, config.json, a model card and, when the model
        came from a run, its density picture. `from_run` / `from_pretrained` read it back."""
        from ebmkit.hub import save_pretrained

        return save_pretrained(self, folder)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                    commit_message: str | None = None, token: str | bool | None = None,
                    command: str | None = None) -> str:
        """Upload `save_pretrained`'s folder to the Hub; returns the commit id. The token comes
        from huggingface_hub's usual places (``HF_TOKEN``, ``hf auth login``) unless given;
        ``command``, the command that trained the model, goes into the card."""
        from ebmkit.hub import push_to_hub

        return push_to_hub(self, repo_id, private=private, revision=revision, commit_message=commit_message,
                           command=command,
                           token=token)
