"""Declared compatibility: what each component needs from the other three, and what it provides.

Every schedule, energy, sampler and divergence class answers two questions from its options
alone: ``provides(options)``, the capabilities it offers, and ``needs(options)``, the
capabilities it asks of another slot. An assembly works when every need is met. `problems`
lists the unmet ones, each naming both components, the capability and who provides it;
`Recipe` validation raises them, so an incompatible recipe fails before anything is built.
`assemblies` walks every registered combination, for ``ebmkit list --compatible`` and tests.

A plugin component declares the same way. A subclass inherits its base's declarations: a
schedule provides 'level0_noise' when its σ̄_0 > 0, a sampler with ``denoise`` needs it; a
class that declares nothing else provides and needs nothing else.

A single-level recipe (persistent CD, score matching at one noise level) has no schedule at
all (``schedule: null``): then every other component must declare ``needs_schedule = False``,
and is built with ``schedule=None``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ebmkit.registry import ComponentError, parse_spec, registry

KINDS = {"schedule": "schedules", "energy": "energies", "sampler": "samplers", "divergence": "divergences"}
SLOTS = tuple(KINDS)
"""The four slots of an assembly (`Recipe`'s fields of the same names) and their registries."""

CAPABILITIES: dict[str, str] = {
    # schedules
    "level0_noise": "σ̄_0 > 0, some noise kept at level 0: the recovery Langevin step s_t² = b² c_t σ²_{t+1} "
                    "divides by it, and the final Tweedie step σ̄_0² ∇E is nothing without it",
    "diffusion_times": "a continuous diffusion time per level, of which the importance weight w_τ is a function",
    # energies
    "step_sizes": "a per-level Langevin step s_t² of its own, as DRL's f = g/s_t² has",
    "level_T": "an energy at level T as well, the prior's level, for a time-conditioned value V(x, T)",
    # samplers
    "recovery_negatives": "negatives y = a_{t+1} x_t of each level's recovery likelihood, drawn given x_{t+1}",
    "latent_generator": "negatives x_t drawn given x_{t+1} by a generator G(x_{t+1}, z, t), with an encoder of z "
                        "from (x_t, x_{t+1}) for its entropy bound and ELBO",
    "fresh_samples": "level-0 samples drawn from the prior, independent of the training batch",
    # divergences
    "generator_objective": "a loss for the sampler's generator, which the energy's loss does not train",
}


@dataclass(frozen=True)
class Need:
    """A capability one component asks of the component in another slot."""

    slot: str
    capability: str
    instead: str = ""
    """Another way to meet it, said in the error, e.g. "set sampler.b_square (e.g. 2e-4)"."""

    def __post_init__(self):
        if self.slot not in SLOTS:
            raise ValueError(f"Need.slot must be one of {', '.join(SLOTS)}, got {self.slot!r}")
        if not (isinstance(self.capability, str) and self.capability):
            raise ValueError(f"Need.capability is a capability's name, got {self.capability!r}")


class Declares:
    """The declaration interface; the four base classes inherit it and components override it.

    ``fit(options, data)`` returns the options with those that are measured from the data
    ('auto') resolved against a `ebmkit.types.DataSummary`; by default there are none.
    ``capabilities`` introduces capability names beyond `CAPABILITIES`, each with what it
    means: a plugin whose components provide or need something new declares it here, on any
    of its classes.
    """

    capabilities: dict[str, str] = {}
    needs_schedule: bool = True
    """False: the component also works without a noise schedule (built with ``schedule=None``)."""

    @classmethod
    def fit(cls, options, data):
        return options

    @classmethod
    def provides(cls, options) -> frozenset[str]:
        return frozenset()

    @classmethod
    def needs(cls, options) -> tuple[Need, ...]:
        return ()


def known_capabilities() -> dict[str, str]:
    """Every capability name and what it means: `CAPABILITIES` and those that registered
    components introduce (``Declares.capabilities``); a broken plugin introduces none."""
    known = dict(CAPABILITIES)
    for kind in KINDS.values():
        reg = registry(kind)
        for name in reg.names():
            try:
                declared = getattr(reg.get(name).obj, "capabilities", None) or {}
            except ComponentError:
                continue
            for capability, meaning in declared.items():
                known.setdefault(capability, meaning)
    return known


def declaration(slot: str, spec: Any) -> tuple[frozenset[str], tuple[Need, ...]]:
    """(provides, needs) of one component spec, from its class and validated options."""
    entry, options = registry(KINDS[slot]).parse(spec)
    provides, needs = getattr(entry.obj, "provides", None), getattr(entry.obj, "needs", None)
    try:  # a schedule's provides builds it: its own checks of the options speak here
        declared = (frozenset(provides(options)) if provides else frozenset(), tuple(needs(options)) if needs else ())
    except ComponentError:
        raise
    except ValueError as exc:
        raise ComponentError(f"{KINDS[slot]} '{entry.name}': {exc}") from None
    names = declared[0] | {need.capability for need in declared[1]}
    if not names <= CAPABILITIES.keys():  # the built-in names need no search through the plugins
        unknown = sorted(names - known_capabilities().keys())
        if unknown:
            raise ComponentError(
                f"{KINDS[slot]} '{entry.name}' declares unknown capabilit{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(map(repr, unknown))}; known: {', '.join(known_capabilities())}. A new one is "
                "introduced in a component class's `capabilities` mapping (name → what it means)")
    return declared


def fit(slot: str, spec: Any, data) -> dict | None:
    """One component spec with its 'auto' options fitted to the data (`Declares.fit`), every
    option filled in: what a run saves, so that rebuilding it never needs the data."""
    if spec is None:  # a recipe without a schedule
        return None
    reg = registry(KINDS[slot])
    entry, options = reg.parse(spec)
    fitter = getattr(entry.obj, "fit", None)  # a plugin class need not inherit Declares
    if options is None or fitter is None:
        return reg.validate(spec)
    return {"name": entry.name, **fitter(options, data).model_dump(mode="json")}


def providers(slot: str, capability: str) -> list[str]:
    """Registered components of ``slot`` that provide ``capability`` at their default options."""
    names = []
    for name in registry(KINDS[slot]).names():
        try:
            if capability in declaration(slot, name)[0]:
                names.append(name)
        except ComponentError:  # a broken plugin provides nothing
            continue
    return names


def problems(assembly: dict[str, Any]) -> list[str]:
    """Every unmet need of an assembly {slot: spec}, one sentence each ([] when it works).
    A schedule of None (a single-level recipe) provides nothing."""
    present = [slot for slot in SLOTS if assembly[slot] is not None or slot != "schedule"]
    declared = {slot: declaration(slot, assembly[slot]) if slot in present else (frozenset(), ()) for slot in SLOTS}
    names = {slot: parse_spec(assembly[slot], KINDS[slot])[0] if slot in present else "(none)" for slot in SLOTS}
    needed = {need.capability for slot in SLOTS for need in declared[slot][1]}
    meanings = CAPABILITIES if needed <= CAPABILITIES.keys() else known_capabilities()
    unmet = []
    if "schedule" not in present:
        for slot in SLOTS[1:]:
            if registry(KINDS[slot]).get(names[slot]).obj.needs_schedule:
                free = ", ".join(schedule_free(slot)) or "(none registered)"
                unmet.append(f"the recipe has no schedule, but {slot} '{names[slot]}' works on a noise schedule's "
                             f"levels; set a schedule, or use a {slot} that works without one: {free}")
    for slot in SLOTS:
        for need in declared[slot][1]:
            if need.capability in declared[need.slot][0]:
                continue
            article = "an" if need.slot[0] in "aeiou" else "a"
            others = ", ".join(providers(need.slot, need.capability)) or "(none registered)"
            message = (f"{slot} '{names[slot]}' needs {article} {need.slot} that provides '{need.capability}' "
                       f"— {meanings[need.capability]}; {need.slot} '{names[need.slot]}' does not. "
                       f"{KINDS[need.slot].capitalize()} that do at their defaults: {others}")
            unmet.append(message + (f"; or {need.instead}" if need.instead else ""))
    return unmet


def schedule_free(slot: str) -> list[str]:
    """Registered components of ``slot`` that work without a noise schedule."""
    names = []
    for name in registry(KINDS[slot]).names():
        try:
            if not registry(KINDS[slot]).get(name).obj.needs_schedule:
                names.append(name)
        except (ComponentError, AttributeError):  # a broken plugin, or a class without Declares
            continue
    return names


def check(assembly: dict[str, Any]) -> None:
    """Raise `ComponentError` with every unmet need of the assembly."""
    unmet = problems(assembly)
    if unmet:
        raise ComponentError("incompatible components: " + " | ".join(unmet))


def assemblies(choices: dict[str, Iterable[Any]] | None = None) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """(assembly, problems) for every combination of ``choices`` (default: every registered name)."""
    choices = choices or {slot: registry(KINDS[slot]).names() for slot in SLOTS}
    for combo in itertools.product(*(list(choices[slot]) for slot in SLOTS)):
        assembly = dict(zip(SLOTS, combo))
        yield assembly, problems(assembly)


def matrix() -> tuple[dict[str, list[str]], dict[tuple[str, str], dict[str, list[str]]]]:
    """Which registered components assemble, each at its defaults: the names per slot, and for
    each sampler × divergence pair that assembles at all, energy → the schedules that work."""
    names = {slot: [] for slot in SLOTS}
    for slot in SLOTS:
        for name in registry(KINDS[slot]).names():
            try:
                declaration(slot, name)
                names[slot].append(name)
            except ComponentError:  # a broken plugin is listed by `ebmkit list`, not here
                continue
    cells: dict[tuple[str, str], dict[str, list[str]]] = {}
    for assembly, unmet in assemblies(names):
        if not unmet:
            pair = (assembly["sampler"], assembly["divergence"])
            cells.setdefault(pair, {}).setdefault(assembly["energy"], []).append(assembly["schedule"])
    return names, cells
