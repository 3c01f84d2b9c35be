"""Declared compatibility (ebmkit.compose): every assembly the declarations allow trains on a 2D
set and generates finite samples; every one they forbid is refused when the recipe is made,
with a message naming both components and the missing capability."""

import pytest
import torch

from ebmkit import Recipe, RecipeError, compose
from ebmkit.energies.base import Energy
from ebmkit.registry import BUILTIN, ComponentError, parse_spec, registry
from ebmkit.training import Trainer

# Every built-in component, at its defaults, plus the option values that change a declaration
# (a Langevin step of the sampler's own, a time-independent value, importance weights, the
# final Tweedie step, a schedule without level-0 noise); the DDPM and VE schedules get 8 levels instead of 1000 or 232 to stay quick.
CHOICES = {
    "schedule": ["drl", "vp", {"name": "vp", "eps": 0.0}, "cosine_logsnr",
                 {"name": "ddpm_linear", "num_levels": 8}, {"name": "ddpm_cosine", "num_levels": 8},
                 {"name": "ve_geometric", "num_levels": 8}],
    "energy": ["scalar", "drl", "residual_norm"],
    "sampler": ["langevin", {"name": "langevin", "b_square": 2e-3, "c_rule": "constant"},
                "cooperative", {"name": "cooperative", "refine": {"name": "langevin", "b_square": 2e-3, "c_rule": "constant"}},
                "adversarial", {"name": "adversarial", "denoise": True},
                "dp_policy", {"name": "dp_policy", "value": "time_independent"}, "replay",
                "reverse_diffusion", {"name": "reverse_diffusion", "denoise": True},
                "tempered_langevin", {"name": "tempered_langevin", "init": "source"}],
    "divergence": ["recovery_likelihood", "jeffrey", "kl", "reverse_kl", "gcd",
                   {"name": "jeffrey", "importance_weight": (0.6, 0.2)}, "cd", "dsm",
                   "energy_matching", {"name": "energy_matching", "lambda_cd": 0.0}],
}
SMALL = {  # partners shrunk so that each assembly trains in about a second
    "langevin": {"n_steps": 2}, "cooperative": {"initializer": {"name": "mlp", "width": 16, "depth": 1}},
    "dp_policy": {"network": {"name": "mlp", "width": 16, "depth": 1}},
    "replay": {"n_steps": 2, "buffer_size": 64}, "tempered_langevin": {"n_steps": 2, "generate_time": 0.05},
}
ASSEMBLIES = list(compose.assemblies(CHOICES))
ALLOWED = [a for a, unmet in ASSEMBLIES if not unmet]
FORBIDDEN = [(a, unmet) for a, unmet in ASSEMBLIES if unmet]


def _name(spec) -> str:
    return parse_spec(spec, "component")[0]


def _id(assembly) -> str:
    def one(spec):
        name, options = parse_spec(spec, "component")
        return name + "".join(f",{k}={v}" for k, v in options.items() if not isinstance(v, dict)) + (
            ",refine" if "refine" in options else "")
    return "/".join(one(assembly[slot]) for slot in compose.SLOTS)


def _recipe(assembly) -> Recipe:
    sampler = assembly["sampler"]
    name, options = parse_spec(sampler, "sampler")
    sampler = {"name": name, **SMALL.get(name, {}), **options}
    if name == "cooperative":
        sampler["refine"] = {**{"name": "langevin"}, **options.get("refine", {}), "n_steps": 2}
    return Recipe.create(name="assembly", data="8gaussians", schedule=assembly["schedule"],
                         network={"name": "mlp", "width": 16, "depth": 1}, energy=assembly["energy"],
                         sampler=sampler, divergence=assembly["divergence"],
                         # two steps of an untrained assembly generate far from the data, which the
                         # divergence watch would rightly stop: this checks that it assembles and runs
                         train={"steps": 2, "batch_size": 16, "eval_every": 0, "seed": 0, "max_negative_ratio": None})


def test_the_choices_cover_every_builtin_component():
    for slot, choices in CHOICES.items():
        builtin = {e["name"] for e in registry(compose.KINDS[slot]).list() if e["source"] == BUILTIN}
        assert {_name(c) for c in choices} == builtin, slot


def test_the_declarations_allow_each_papers_assembly_and_forbid_mixed_ones():
    """A fixed, hand-written expectation (not read back from the declarations)."""
    allowed = {tuple(_name(a[s]) for s in compose.SLOTS) for a in ALLOWED}
    for paper in [("drl", "drl", "langevin", "recovery_likelihood"), ("drl", "drl", "cooperative", "recovery_likelihood"),
                  ("vp", "scalar", "adversarial", "jeffrey"), ("ddpm_cosine", "scalar", "dp_policy", "gcd"),
                  ("ddpm_cosine", "scalar", "reverse_diffusion", "dsm")]:
        assert paper in allowed
    for mixed in [("drl", "scalar", "adversarial", "recovery_likelihood"), ("vp", "scalar", "langevin", "gcd"),
                  ("drl", "drl", "dp_policy", "jeffrey"), ("ddpm_linear", "drl", "adversarial", "kl"),
                  ("drl", "scalar", "langevin", "cd"), ("drl", "drl", "replay", "recovery_likelihood"),
                  ("vp", "scalar", "replay", "jeffrey"),
                  ("drl", "drl", "langevin", "dsm"), ("drl", "scalar", "reverse_diffusion", "recovery_likelihood"),
                  ("drl", "drl", "reverse_diffusion", "dsm")]:
        assert mixed not in allowed
    # PCD's level-0 parts also work beside a schedule: `replay` feeds `gcd`, `dp_policy` feeds `cd`
    assert ("vp", "scalar", "replay", "gcd") in allowed and ("ddpm_cosine", "scalar", "dp_policy", "cd") in allowed
    # dsm assembles only with reverse_diffusion and an energy with a level-T energy (scalar, residual_norm)
    # with PCD (57 more, 188 − 131), DSM (30 more: ve_geometric and dsm) and ve_geometric beside PCD's parts (8);
    # Energy Matching 194 more: energy_matching with tempered_langevin (68, both λ_CD), without its contrastive
    # term beside every other sampler (92), and tempered_langevin's source-only chains feeding cd and gcd (34)
    assert ("ddpm_cosine", "scalar", "tempered_langevin", "energy_matching") in allowed
    assert (len(ALLOWED), len(FORBIDDEN)) == (420, 2310)


def test_without_a_schedule_only_the_schedule_free_components_assemble():
    """PCD's and Energy Matching's assemblies (`schedule: null`) are those whose every part works
    without levels: energy_matching without its contrastive term takes any such sampler."""
    choices = {**CHOICES, "schedule": [None]}
    allowed = {tuple(_name(a[s]) for s in compose.SLOTS[1:]) for a, unmet in compose.assemblies(choices) if not unmet}
    assert allowed == {("scalar", "replay", "cd"), ("scalar", "tempered_langevin", "cd"),
                       ("scalar", "replay", "energy_matching"), ("scalar", "tempered_langevin", "energy_matching")}


@pytest.mark.parametrize("assembly", [a for a, _ in FORBIDDEN], ids=[_id(a) for a, _ in FORBIDDEN])
def test_a_forbidden_assembly_is_refused_naming_both_components(assembly):
    with pytest.raises(RecipeError) as err:
        _recipe(assembly)
    message = str(err.value)
    unmet = compose.problems(assembly)  # now: which plugins are visible decides the "… that do" lists
    assert message == "incompatible components: " + " | ".join(unmet)
    for problem in unmet:
        needer, _, rest = problem.partition(" needs ")
        slot, name = needer.split(" ", 1)
        assert name == f"'{_name(assembly[slot])}'"
        capability = rest.split("'")[1]
        assert capability in compose.known_capabilities()  # 'marginal_generation' comes with reverse_diffusion
        other = rest.split("; ")[1].split(" does not")[0]
        other_slot, other_name = other.split(" ", 1)
        assert other_name == f"'{_name(assembly[other_slot])}'", problem


@pytest.mark.parametrize("assembly", ALLOWED, ids=[_id(a) for a in ALLOWED])
def test_an_allowed_assembly_trains_and_samples(assembly, tmp_path):
    recipe = _recipe(assembly)
    torch.manual_seed(0)
    model = Trainer(recipe, tmp_path / "run", progress=False).fit()
    x = model.generate(64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 2)
    assert torch.isfinite(x).all()


def test_a_component_that_declares_nothing_needs_and_provides_nothing():
    assert compose.declaration("energy", "scalar") == (frozenset({"level_T"}), ())

    class Bare:
        pass

    from ebmkit.registry import ENERGIES
    ENERGIES.register("bare_for_compose_test")(Bare)
    try:
        assert compose.declaration("energy", "bare_for_compose_test") == (frozenset(), ())
    finally:
        ENERGIES._builtin.pop("bare_for_compose_test")


def test_an_unknown_capability_or_slot_is_refused():
    class Teleporting(Energy):
        """Needs what nobody introduces."""

        @classmethod
        def needs(cls, options):
            return (compose.Need("schedule", "teleport"),)

    from ebmkit.registry import ENERGIES
    ENERGIES.register("teleporting_for_compose_test")(Teleporting)
    try:  # capability names are open (a plugin introduces its own), so an unknown one is caught where it is declared
        with pytest.raises(ComponentError, match="energies 'teleporting_for_compose_test' declares unknown "
                                                 "capability 'teleport'; known: level0_noise, "):
            compose.declaration("energy", "teleporting_for_compose_test")
    finally:
        ENERGIES._builtin.pop("teleporting_for_compose_test")
    with pytest.raises(ValueError, match="Need.capability is a capability's name"):
        compose.Need("energy", "")
    with pytest.raises(ValueError, match="Need.slot must be one of schedule, energy, sampler, divergence"):
        compose.Need("network", "level_T")
    with pytest.raises(ComponentError, match="unknown sampler 'nope'"):
        compose.declaration("sampler", "nope")


def test_list_compatible_prints_the_matrix():
    import os
    import subprocess
    import sys

    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "ebmkit", "list", "--compatible"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {tuple(c.strip() for c in line.strip("│ ").split("│")) for line in r.stdout.splitlines() if "│" in line}
    assert any(line.split() == ["┃", "sampler", "┃", "divergence", "┃", "drl", "┃", "residual_norm", "┃", "scalar", "┃"]
               for line in r.stdout.splitlines())
    assert ("langevin", "recovery_likelihood", "cosine_logsnr, drl, vp", "—", "—") in rows
    assert ("cooperative", "recovery_likelihood", "cosine_logsnr, drl, vp", "—", "—") in rows
    assert ("adversarial", "jeffrey", "cosine_logsnr, drl, vp", "all", "all") in rows
    assert ("dp_policy", "gcd", "—", "all", "all") in rows
    assert ("replay", "cd", "cosine_logsnr, drl, vp", "all", "all") in rows
    assert ("replay", "gcd", "cosine_logsnr, drl, vp", "all", "all") in rows
    assert ("dp_policy", "cd", "—", "all", "all") in rows
    assert ("reverse_diffusion", "dsm", "—", "all", "all") in rows
    assert ("tempered_langevin", "energy_matching", "cosine_logsnr, drl, vp", "all", "all") in rows
    assert len(rows) == 11
    assert "11 of 56 sampler × divergence pairs assemble" in " ".join(r.stdout.split())


def test_show_prints_a_components_declarations():
    import os
    import subprocess
    import sys

    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1"}
    r = subprocess.run([sys.executable, "-m", "ebmkit", "show", "dp_policy"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "# provides: fresh_samples\n" in r.stdout
    assert "# needs: energy level_T (or set sampler.value=time_independent)\n" in r.stdout
