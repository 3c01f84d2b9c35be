"""Registries of components, one per kind, with third-party discovery through entry points.

A component is a class with a nested pydantic ``Options`` model. A *spec* names one:
``"langevin"`` or ``{"name": "langevin", "n_steps": 15}``. ``registry.build(spec, **deps)``
validates the options and calls ``cls(options, **deps)``.

Plugins register components with entry points in the group ``ebmkit.<kind>`` (for example
``ebmkit.samplers``); the entry-point name is the component name. They are imported lazily,
when that name is first looked up, and a plugin that fails to import breaks only itself.
``EBMKIT_NO_PLUGINS=1`` turns discovery off.
"""

from __future__ import annotations


import fnmatch
import os
import typing
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T")

BUILTIN = "built-in"
IN_PROCESS = "in-process"  # registered by a script or notebook, not by ebmkit or an installed plugin


def registered_source(obj: Any) -> str:
    """Where a component registered with ``register`` comes from: ebmkit's own modules are
    built-in; anything else names its module, so a saved run says what to import to load it."""
    module = getattr(obj, "__module__", None) or "?"
    return BUILTIN if module.partition(".")[0] == "ebmkit" else f"{IN_PROCESS}: {module}"


def _discover(group: str) -> dict[str, list[metadata.EntryPoint]]:
    # Scanning installed distributions costs milliseconds; do it once per group.
    if group not in _DISCOVERED:
        found: dict[str, list[metadata.EntryPoint]] = {}
        for ep in metadata.entry_points(group=group):
            found.setdefault(ep.name, []).append(ep)
        _DISCOVERED[group] = found
    return _DISCOVERED[group]


_DISCOVERED: dict[str, dict[str, list[metadata.EntryPoint]]] = {}


def refresh_plugins() -> None:
    """Forget discovered entry points (after installing a plugin in a running process)."""
    _DISCOVERED.clear()


class ComponentError(ValueError):
    """An unknown component name, bad options, or a broken plugin: one message says which."""


class Options(BaseModel):
    """Base of every component's options: unknown fields are errors, not silently dropped, and
    so are NaN and ±inf, which slip past unbounded fields and lower bounds (inf > 0) and would
    only surface mid-training."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def options_problem(obj: Any) -> str | None:
    """Why a component's ``Options`` is not a valid ebmkit options class, or None when it is.

    ``Options`` is a subclass of `Options` (unknown keys and NaN refused, frozen), or None for a
    component that takes none; and it extends the ``Options`` of every base class that has one,
    because the methods a component inherits (``provides``, ``needs``, ``fit``, its constructor)
    read their fields."""
    options = getattr(obj, "Options", None)
    inherited = [(base, base.__dict__["Options"]) for base in getattr(obj, "__mro__", ())[1:]
                 if isinstance(base.__dict__.get("Options"), type)]
    if options is None:
        if inherited:
            base, opts = inherited[0]
            return f"Options is None, but its base class {base.__name__} reads {opts.__name__}'s fields: extend it"
        return None
    if not (isinstance(options, type) and issubclass(options, Options)):
        what = f"the class {options.__name__}" if isinstance(options, type) else repr(options)
        return f"Options must be a subclass of ebmkit.registry.Options (or None), got {what}"
    for base, opts in inherited:
        if not issubclass(options, opts):
            return (f"Options must extend {base.__name__}'s {opts.__name__}, whose fields the methods it inherits "
                    f"from {base.__name__} read")
    return None


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any  # the component class (or, for recipes and datasets, a factory)
    source: str  # "built-in" or the distribution that supplied it

    @property
    def options(self) -> type[BaseModel] | None:
        return getattr(self.obj, "Options", None)

    @property
    def summary(self) -> str:
        """The docstring's first paragraph on one line (a first sentence may wrap)."""
        return " ".join((self.obj.__doc__ or "").strip().split("\n\n")[0].split())


def parse_spec(spec: Any, kind: str) -> tuple[str, dict]:
    """``"name"`` or ``{"name": ..., **options}`` -> (name, options)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, BaseModel):
        spec = spec.model_dump()
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        options = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], options
    raise ComponentError(
        f"{kind}: a spec is a name or a mapping with a 'name' key, got {spec!r}"
    )


def describe_errors(err: ValidationError, model: type[BaseModel]) -> str:
    """pydantic's errors for ``model`` as one line: where, what is wrong and the value given; an
    unknown key lists the keys allowed at that place."""
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(options)"
        cause = e.get("ctx", {}).get("error")
        if not e["loc"] and isinstance(cause, ComponentError):  # a whole-model check (Recipe's assembly)
            problems.append(str(cause))
        elif e["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key; allowed: {', '.join(_fields_at(model, e['loc'][:-1]))}")
        elif isinstance(cause, ComponentError):  # a nested spec's error already says it all
            problems.append(f"{where}: {cause}")
        elif e["type"] == "missing" and isinstance(e["loc"][-1], int):  # a fixed-length tuple given too few
            parent = ".".join(str(p) for p in e["loc"][:-1])
            problems.append(f"{parent}: item {e['loc'][-1]} is missing (got {e.get('input')!r})")
        else:  # a whole group's check (its input a mapping) names what it found itself
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"
            problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(problems)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    for key in loc:  # nested models: Recipe -> TrainConfig -> a list's PhaseConfig
        model = typing.get_args(model)[0] if isinstance(key, int) else model.model_fields[key].annotation
    return list(model.model_fields)


class Registry(Generic[T]):
    """Name -> component, for one kind (``schedules``, ``energies``, ``samplers`` ...)."""

    def __init__(self, kind: str, *, group: str | None = None):
        self.kind = kind
        self.group = group or f"ebmkit.{kind}"
        self._builtin: dict[str, Entry] = {}
        self._plugins: dict[str, Entry] | None = None  # loaded entries, lazily
        self._plugin_errors: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Class (or factory) decorator: ``@SAMPLERS.register("langevin")``."""

        def deco(obj: T) -> T:
            key = name or obj.__name__.lower()
            if key in self._builtin:
                raise ComponentError(f"{self.kind}: '{key}' is registered twice")
            problem = options_problem(obj)
            if problem:
                raise ComponentError(f"{self.kind} '{key}': {problem}")
            self._builtin[key] = Entry(key, obj, registered_source(obj))
            return obj

        return deco

    # -- plugins ------------------------------------------------------------------------
    def _entry_points(self) -> dict[str, list[metadata.EntryPoint]]:
        if os.environ.get("EBMKIT_NO_PLUGINS", "") not in ("", "0"):
            return {}
        return _discover(self.group)

    @staticmethod
    def _dist_name(ep: metadata.EntryPoint) -> str:
        dist = getattr(ep, "dist", None)
        return dist.metadata["Name"] if dist is not None else ep.value.split(":")[0]

    def _plugin_sources(self) -> dict[str, list[str]]:
        return {n: [self._dist_name(ep) for ep in eps] for n, eps in self._entry_points().items()}

    def _load_plugin(self, name: str) -> Entry:
        eps = self._entry_points().get(name, [])
        claimants = [self._dist_name(ep) for ep in eps]
        if name in self._builtin:
            claimants = [self._builtin[name].source, *claimants]
        if len(claimants) > 1:
            raise ComponentError(
                f"{self.kind} '{name}' is claimed by more than one package: "
                + ", ".join(claimants)
                + " — uninstall one of them"
            )
        (ep,) = eps
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            raise ComponentError(
                f"{self.kind} '{name}' from plugin package '{claimants[0]}' failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        problem = options_problem(obj)  # refused here, once, rather than as an AttributeError deep in a command
        if problem:
            raise ComponentError(f"{self.kind} '{name}' from plugin package '{claimants[0]}' is broken: {problem}")
        return Entry(name, obj, claimants[0])

    # -- lookup -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(set(self._builtin) | set(self._entry_points()))

    def get(self, name: str) -> Entry:
        plugin_names = self._entry_points()
        if name in plugin_names:
            return self._load_plugin(name)  # also reports a clash with a built-in
        if name in self._builtin:
            return self._builtin[name]
        raise ComponentError(
            f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} '{name}'; "
            f"available: {', '.join(self.names()) or '(none)'}"
        )

    def list(self, pattern: str = "*") -> list[dict]:
        """Rows for ``ebmkit list``: name, source, status; never raises for a broken plugin."""
        rows = []
        sources = self._plugin_sources()
        for name in self.names():
            if not fnmatch.fnmatch(name, pattern):
                continue
            try:
                entry = self.get(name)
                rows.append(
                    {"name": name, "kind": self.kind, "source": entry.source, "summary": entry.summary, "error": None}
                )
            except ComponentError as exc:
                src = ", ".join(([self._builtin[name].source] if name in self._builtin else []) + sources.get(name, []))
                rows.append({"name": name, "kind": self.kind, "source": src, "summary": "", "error": str(exc)})
        return rows

    # -- construction -------------------------------------------------------------------
    def validate(self, spec: Any) -> dict:
        """Check a spec and return it normalised: ``{"name": ..., **all options}``."""
        name, options = parse_spec(spec, self.kind)
        entry = self.get(name)
        if entry.options is None:
            if options:
                raise ComponentError(f"{self.kind} '{name}' takes no options, got {sorted(options)}")
            return {"name": name}
        return {"name": name, **self._options(entry, options).model_dump(mode="json")}

    def parse(self, spec: Any) -> tuple[Entry, BaseModel | None]:
        """The entry a spec names and its validated options (None for a component without any)."""
        name, options = parse_spec(spec, self.kind)
        entry = self.get(name)
        if entry.options is None:
            self.validate(spec)
            return entry, None
        return entry, self._options(entry, options)

    def build(self, spec: Any, **deps: Any) -> Any:
        entry, parsed = self.parse(spec)
        if parsed is None:
            return entry.obj(**deps)
        try:
            return entry.obj(parsed, **deps)
        except ValueError as exc:
            if type(exc) is not ValueError:  # typed errors (DataError, ComponentError) say enough
                raise
            # a constructor's own check, e.g. an assembly that cannot work: name the component
            raise ComponentError(f"{self.kind} '{entry.name}': {exc}") from None

    def _options(self, entry: Entry, options: dict) -> BaseModel:
        try:
            return entry.options(**options)
        except ValidationError as err:
            problems = describe_errors(err, entry.options)
            raise ComponentError(f"{self.kind} '{entry.name}': bad option — {problems}") from None

    def source(self, spec: Any) -> str:
        return self.get(parse_spec(spec, self.kind)[0]).source


SCHEDULES: Registry = Registry("schedules")
ENERGIES: Registry = Registry("energies")
NETWORKS: Registry = Registry("networks")
SAMPLERS: Registry = Registry("samplers")
DIVERGENCES: Registry = Registry("divergences")
DATASETS: Registry = Registry("datasets")
RECIPES: Registry = Registry("recipes")
LOGGERS: Registry = Registry("loggers")  # where a run's reports go (ebmkit.loggers), named in train.loggers
COUPLINGS: Registry = Registry("couplings")  # pairings of noise with data (ebmkit.couplings), a divergence's option
TEMPERATURES: Registry = Registry("temperatures")  # ε(t) of a tempered chain (ebmkit.temperatures), a sampler's option

REGISTRIES: dict[str, Registry] = {
    r.kind: r for r in (SCHEDULES, ENERGIES, NETWORKS, SAMPLERS, DIVERGENCES, DATASETS, RECIPES, LOGGERS,
                 COUPLINGS, TEMPERATURES)
}


def registry(kind: str) -> Registry:
    if kind not in REGISTRIES:
        raise ComponentError(f"unknown component kind '{kind}'; available: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind]
