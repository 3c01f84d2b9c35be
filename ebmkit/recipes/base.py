"""`Recipe`: a declarative assembly of one component of each kind plus training options.

    Recipe.from_name("drl").override({"train.steps": 500, "data": "checkerboard"}).fit()

A recipe validates every component spec against its registry when it is made, and the four
components against each other's declarations (`ebmkit.compose`), so a typo in a name or an
option, or an assembly that cannot work, fails before any training starts, with one message
that says what is allowed.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ebmkit import compose
from ebmkit._version import __version__

from ebmkit.registry import BUILTIN, IN_PROCESS, ComponentError, describe_errors, registry

COMPONENTS = {
    "data": "datasets",
    "schedule": "schedules",
    "network": "networks",
    "energy": "energies",
    "sampler": "samplers",
    "divergence": "divergences",
}


def _has_groups(node: dict, path: list[str]) -> bool:
    """Whether node[p1][p2]… exists as nested dicts."""
    for p in path:
        if not isinstance(node.get(p), dict):
            return False
        node = node[p]
    return True


class RecipeError(ValueError):
    """A recipe that cannot be made: one line naming the field and what is allowed."""


def _unique(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose keys are all different (json keeps the last of a repeated key)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key '{key}' appears twice in one object")
        seen[key] = value
    return seen


def _load_yaml(text: str):
    """yaml.safe_load, refusing a mapping that repeats a key (PyYAML keeps the last silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in keys:
                    raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice in one mapping",
                                                            key_node.start_mark)
                keys.add(key)
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=UniqueKeyLoader)


class NewerVersionWarning(UserWarning):
    """A saved run or Hub repo written by a newer ebmkit than the one reading it."""


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: '0.10.2rc1' → (0, 10, 2)."""
    return tuple(int(m) for m in re.findall(r"\d+", version.split("+")[0])[:3])


# NaN and ±inf slip past unbounded fields and lower bounds (inf > 0) and would only surface
# mid-training; refuse them as "not a finite number", as the components' options do (registry.Options).
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
DEVICES = "auto, cpu, cuda, cuda:N or mps"
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's β₁, β₂
# The 2D presets' torch threads: MLPs of a few thousand parameters gain nothing from a second
# thread, and its spin-waits cost much when the cores are busy (the README's first command under
# a 2-job load: 326 s with torch's 2 threads, 100 s with one). `--set train.threads=N` overrides.
TOY_THREADS = 1


class PhaseConfig(BaseModel):
    """One phase of training (``train.phases``): its own number of steps, learning rates, EMA decay
    and divergence options (Energy Matching's flow-only warm-up, then its contrastive phase with
    another EMA decay). Unset fields keep the run's."""

    model_config = STRICT

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="how logs and messages call the phase")
    steps: int = Field(ge=1)
    lr: Optional[float] = Field(None, gt=0, description="the energy's lr in this phase; null: train.lr")
    sampler_lr: Optional[float] = Field(None, gt=0, description="a learnable sampler's lr; null: train.sampler_lr")
    ema_decay: Optional[float] = Field(None, ge=0, lt=1, description="null: train.ema_decay")
    divergence: dict[str, Any] = Field(default_factory=dict, description="divergence options changed in this phase "
                                       "(the samplers and energies hold weights: their options are the run's)")


class TrainConfig(BaseModel):
    model_config = STRICT

    steps: int = Field(2000, ge=1, description="training iterations")
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0, description="Adam ε (DRL's Keras code used 1e-7)")
    weight_decay: float = Field(0.0, ge=0)
    sampler_lr: Optional[float] = Field(None, gt=0, description="learnable samplers' AdamW lr; null: lr")
    sampler_grad_clip: Optional[float] = Field(None, gt=0, description="sampler's max grad norm; null: grad_clip")
    pretrain_steps: int = Field(0, ge=0, description="steps of the sampler's own pretraining objective before step 1")
    pretrain_lr: float = Field(1e-3, gt=0, description="Adam lr of the sampler pretraining phase")
    sampler_weight_decay: float = Field(0.0, ge=0)
    warmup: int = Field(0, ge=0, description="linear learning-rate warm-up, in iterations")
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: Optional[float] = Field(1.0, gt=0, description="max global grad norm; null for none")
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_warmup: bool = Field(True, description="decay min(ema_decay, (1+n)/(10+n)) after n updates")
    seed: int = 0
    standardize: Optional[bool] = Field(
        None, description="train on the points standardised per axis, z = (x − μ)/σ (ebmkit.data.transform): true, "
                          "false, or null to follow the data set (a user's file: yes; a built-in set: no, it is "
                          "defined at the presets' scale); point data only")
    device: str = Field("auto", description=DEVICES)
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads; null keeps torch's default")
    log_every: int = Field(50, ge=1)
    loggers: list[Any] = Field(default_factory=lambda: [{"name": "jsonl"}], description="where the run's reports "
                               "go (ebmkit.loggers): jsonl (stats.jsonl), tensorboard, mlflow, wandb or a plugin's, "
                               "each a name or {name, **options}")
    checkpoint_every: int = Field(500, ge=1)
    eval_every: int = Field(0, ge=0, description="iterations between periodic evaluations; 0 for none")
    eval_samples: int = Field(2000, ge=2, description="samples per periodic evaluation")
    eval_metric: Literal["sw", "fd_fmnist"] = Field(
        "sw", description="what periodic evaluation computes (lower is better): sliced Wasserstein to fresh data, "
                          "or the Fréchet distance in a Fashion-MNIST classifier's features (28×28 grey images)")
    keep_best: bool = Field(False, description="export the EMA weights with the best periodic eval_metric")
    compile: bool = Field(False, description="torch.compile the networks being trained, in place (parameter names "
                          "unchanged); the EMA copy that generates stays eager")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the forward passes; fp16 adds loss scaling (a GradScaler per optimizer)")
    on_divergence: Literal["stop", "rollback"] = Field(
        "stop", description="a divergence (a non-finite loss, or a blow-up: max_negative_ratio, max_grad_growth) stops "
                            "the run, or rolls back to the last good checkpoint with a new seed")
    max_rollbacks: int = Field(3, ge=0, description="rollbacks before a diverging run stops")
    max_negative_ratio: Optional[float] = Field(
        100.0, gt=1, description="a divergence: a step's negatives whose largest norm exceeds this many times its "
                                 "positives' largest (and generated samples this many times the data's); "
                                 "null: not watched")
    max_grad_growth: Optional[float] = Field(
        1e4, gt=1, description="a divergence: a gradient norm (before clipping) this many times the median of "
                               "the same update's norms over the last grad_growth_window steps; null: not watched")
    grad_growth_window: int = Field(1000, ge=10, description="steps of gradient-norm history that max_grad_growth "
                                                             "compares with")
    phases: list[PhaseConfig] = Field(
        default_factory=list, description="the run's phases after pretraining, in order (ebmkit.training.phases); "
                                          "empty: one phase of train.steps")

    @model_validator(mode="after")
    def _phases_add_up(self) -> "TrainConfig":
        if not self.phases:
            return self
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must differ, got {names}")
        total = sum(p.steps for p in self.phases)
        if "steps" not in self.model_fields_set:
            self.__dict__["steps"] = total  # the phases say how long the run is
        elif self.steps != total:
            raise ValueError(f"steps is {self.steps} but the phases add up to {total} "
                             f"({' + '.join(str(p.steps) for p in self.phases)}); change a phase's steps instead")
        return self

    @field_validator("loggers")
    @classmethod
    def _known_loggers(cls, specs: list) -> list[dict]:
        loggers = [registry("loggers").validate(spec) for spec in specs]
        names = [spec["name"] for spec in loggers]
        if len(set(names)) != len(names):
            raise ValueError("names a logger twice")
        return loggers

    @field_validator("device")
    @classmethod
    def _known_device(cls, name: str) -> str:
        # the spelling only: whether CUDA is there is the trainer's question, on the machine that trains
        if not DEVICE_PATTERN.fullmatch(name):
            raise ValueError(f"must be {DEVICES}")
        return name


class EvalConfig(BaseModel):
    model_config = STRICT

    n_samples: int = Field(10_000, ge=2, description="generated and fresh data points")
    n_projections: int = Field(1000, ge=1, description="sliced-Wasserstein projections")
    grid_resolution: int = Field(256, ge=8, description="cells per axis for the exact 2D likelihood")
    seed: int = 1234


class Recipe(BaseModel):
    """One EBM training algorithm as data: components by name + options, and training options.

    This is the configuration, below the model and the trainer that it names; `ebmkit.Recipe`
    (`ebmkit.api`) is the same class with ``fit`` and ``from_pretrained``, and is what
    `from_name`, `load` and `override` return when called on it."""

    model_config = ConfigDict(STRICT, validate_assignment=True)

    name: str
    description: str = ""
    data: Any = "8gaussians"
    schedule: Any = None  # None: a single-level recipe, without noise levels (compose: needs_schedule)
    network: Any
    energy: Any
    sampler: Any
    divergence: Any
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator(*COMPONENTS, mode="before")
    @classmethod
    def _validate_component(cls, spec: Any, info) -> dict | None:
        if spec is None and info.field_name == "schedule":
            return None
        return registry(COMPONENTS[info.field_name]).validate(spec)

    @model_validator(mode="after")
    def _assembles(self) -> "Recipe":
        compose.check({slot: getattr(self, slot) for slot in compose.SLOTS})
        for phase in self.train.phases:  # each phase's divergence assembles too
            if "name" in phase.divergence:
                raise ValueError(f"train.phases '{phase.name}': a phase changes the divergence's options, not the "
                                 f"divergence ('{self.divergence['name']}')")
            try:
                divergence = registry("divergences").validate({**self.divergence, **phase.divergence})
            except (ComponentError, ValueError) as err:
                raise ValueError(f"train.phases '{phase.name}': {err}") from None
            compose.check({**{slot: getattr(self, slot) for slot in compose.SLOTS}, "divergence": divergence})
        return self

    # -- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, **fields: Any) -> "Recipe":
        try:
            return cls(**fields)
        except ValidationError as err:
            raise RecipeError(describe_errors(err, cls)) from None

    @classmethod
    def from_name(cls, name: str) -> "Recipe":
        """A registered preset (built-in or from a plugin's ``ebmkit.recipes`` entry point)."""
        try:
            factory = registry("recipes").get(name).obj
        except ComponentError as err:
            raise RecipeError(str(err)) from None
        recipe = factory()
        if isinstance(recipe, cls):
            return recipe
        # a factory builds this configuration class (or a mapping); `ebmkit.Recipe`, the subclass
        # that trains, asks for one of its own
        return cls.create(**(recipe.model_dump() if isinstance(recipe, Recipe) else recipe))

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        """From a .json / .yaml recipe file, or a run's ``config.json``."""
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file '{path}' not found")
        try:
            text = path.read_text(encoding="utf-8-sig")
            data = _load_yaml(text) if path.suffix in (".yaml", ".yml") else json.loads(text, object_pairs_hook=_unique)
        except Exception as exc:  # not UTF-8, or not JSON / YAML
            # a YAML error's own text spans several lines and quotes the source: keep where and what
            mark = getattr(exc, "problem_mark", None)
            problem = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}" if mark else exc
            raise RecipeError(f"recipe file '{path}' is not valid {path.suffix[1:] or 'JSON'}: {problem}") from None
        if not isinstance(data, dict):
            raise RecipeError(f"recipe file '{path}' must hold a mapping, got {type(data).__name__}")
        if "recipe" in data:  # a run's (or a Hub repo's) config.json
            return cls.from_config(data, where=str(path))
        try:
            return cls.create(**data)
        except RecipeError as err:
            raise RecipeError(f"recipe file '{path}': {err}") from None

    @classmethod
    def from_config(cls, config: dict, where: str = "config.json") -> "Recipe":
        """The recipe inside a run's or a Hub repo's ``config.json``.

        The config records which package supplied each component when the model was saved, so
        a component missing here fails with the package to install instead of a bare name.
        """
        if not isinstance(config, dict) or not isinstance(config.get("recipe"), dict):
            raise RecipeError(f"'{where}' has no 'recipe' mapping; it was not written by ebmkit")
        written = config.get("ebmkit_version")
        if isinstance(written, str) and _release(written) > _release(__version__):
            warnings.warn(f"'{where}' was written by ebmkit {written}, newer than this ebmkit {__version__}: options "
                          "it knows may be missing here (upgrade torch-ebmkit)", NewerVersionWarning, stacklevel=2)
        for field, origin in (config.get("provenance") or {}).items():
            if field not in COMPONENTS or not isinstance(origin, dict) or not isinstance(origin.get("name"), str):
                continue
            if origin["name"] in registry(COMPONENTS[field]).names():
                continue
            source = origin.get("source", BUILTIN)
            if source == BUILTIN:
                hint = (f"it is built into ebmkit {config.get('ebmkit_version', '(unknown version)')}, "
                        f"this is ebmkit {__version__}: upgrade torch-ebmkit")
            elif source.startswith(IN_PROCESS):
                module = source.partition(":")[2].strip()
                hint = f"it was registered in-process by the module '{module}': import it (it registers the component) first"
            else:
                hint = f"it comes from the plugin package '{source}': pip install {source}"
            label = "data set" if field == "data" else field
            raise ComponentError(f"'{where}' needs the {label} '{origin['name']}', which is not installed; {hint}")
        return cls.create(**config["recipe"])

    def override(self, changes: dict[str, Any]) -> "Recipe":
        """A copy with dotted keys replaced: ``{"train.lr": 3e-4, "sampler.n_steps": 15}``.

        ``{"sampler": "langevin"}`` replaces a whole component (its options reset to defaults).
        """
        data = self.model_dump(mode="json")
        if any(key.startswith("train.phases") for key in changes) and "train.steps" not in changes:
            data["train"].pop("steps")  # new phases say how long the run is
        for key, value in changes.items():
            head, _, rest = key.partition(".")
            if head not in data:
                raise RecipeError(f"unknown recipe field '{head}' in '{key}'; fields: {', '.join(data)}")
            if not rest:
                data[head] = value
                continue
            node = data[head]
            if head in COMPONENTS and isinstance(node, str):  # "cifar10" → {"name": "cifar10"}, to take options
                node = data[head] = {"name": node}
            if not isinstance(node, dict):
                raise RecipeError(f"'{head}' has no sub-fields, cannot set '{key}'")
            *parents, leaf = rest.split(".")
            if head in COMPONENTS and not _has_groups(node, parents):
                # a component just named by an earlier change has no nested specs yet: fill in
                # its defaults, so that --set sampler=cooperative --set sampler.refine.n_steps=8 works
                node = data[head] = registry(COMPONENTS[head]).validate(node)
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise RecipeError(f"'{key}': '{p}' is not a group of options")
                node = node[p]
            node[leaf] = value
        return type(self).create(**data)

    def fitted(self, data) -> "Recipe":
        """A copy whose component options measured from the data ('auto') hold the measured values
        (`ebmkit.compose.fit`; ``data`` is a `ebmkit.types.DataSummary`). The trainer saves it."""
        return self.override({slot: compose.fit(slot, getattr(self, slot), data) for slot in compose.SLOTS})

    # -- introspection ------------------------------------------------------------------
    def provenance(self) -> dict[str, dict[str, str]]:
        """Which package supplied each component ("built-in" or a plugin's distribution)."""
        return {
            field: {"name": getattr(self, field)["name"], "source": registry(kind).source(getattr(self, field))}
            for field, kind in COMPONENTS.items() if getattr(self, field) is not None
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

