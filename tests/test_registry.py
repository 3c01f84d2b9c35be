"""The registry: lookup, option validation, and plugin discovery from real installed metadata."""

import os
import subprocess
import sys
import textwrap

import pytest

import ebmkit  # noqa: F401  (registers built-ins)
from ebmkit.registry import SAMPLERS, SCHEDULES, ComponentError, Registry, refresh_plugins
from helpers import assert_one_line_error


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ComponentError) as exc:
        SCHEDULES.build("nope")
    msg = str(exc.value)
    assert "unknown schedule 'nope'" in msg
    for name in ("drl", "cosine_logsnr", "vp", "ddpm_linear", "ddpm_cosine"):
        assert name in msg


def test_bad_option_names_field_and_value():
    with pytest.raises(ComponentError) as exc:
        SAMPLERS.validate({"name": "langevin", "n_steps": "abc"})
    msg = str(exc.value)
    assert "samplers 'langevin'" in msg and "n_steps" in msg and "'abc'" in msg
    with pytest.raises(ComponentError, match="n_stepz"):
        SAMPLERS.validate({"name": "langevin", "n_stepz": 3})
    with pytest.raises(ComponentError, match="greater than or equal to 1"):
        SAMPLERS.validate({"name": "langevin", "n_steps": 0})


def test_validate_fills_defaults_and_build_passes_options():
    spec = SCHEDULES.validate({"name": "drl", "num_levels": 4})
    assert spec == {"name": "drl", "untethered_top": True, "num_levels": 4, "beta_start": 1e-4,
                    "beta_end": 0.02, "num_ddpm_steps": 1000}
    assert SCHEDULES.build(spec).num_levels == 4
    assert SCHEDULES.build("drl").num_levels == 6


def test_duplicate_registration_is_an_error():
    reg = Registry("things")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(ComponentError, match="registered twice"):
        reg.register("a")(A)


def test_in_process_registration_records_its_module_and_a_run_says_to_import_it():
    from ebmkit import Recipe

    reg = Registry("things")

    @reg.register("mine")
    class Mine:
        """Registered by this test module, as a script or notebook would."""

    assert reg.get("mine").source == f"in-process: {__name__}"
    assert reg.list()[0]["source"] == f"in-process: {__name__}"
    assert SCHEDULES.get("drl").source == "built-in"
    config = {"recipe": Recipe.from_name("drl").model_dump(mode="json"),
              "provenance": {"sampler": {"name": "mala_of_a_notebook", "source": "in-process: my_notebook"}}}
    with pytest.raises(ComponentError, match="registered in-process by the module 'my_notebook': import it"):
        Recipe.from_config(config, where="run/config.json")


# -- plugins: real distributions on sys.path, found through importlib.metadata --------------
def _install_fake_dist(root, dist, group_entries, module_name=None, module_source=None):
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = []
    for group, entries in group_entries.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if module_name:
        (root / f"{module_name}.py").write_text(textwrap.dedent(module_source))


@pytest.fixture
def plugin_env(tmp_path, monkeypatch):
    monkeypatch.delenv("EBMKIT_NO_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh_plugins()
    yield tmp_path
    refresh_plugins()
    for mod in [m for m in sys.modules if m.startswith("fakeplug")]:
        del sys.modules[mod]


GOOD_PLUGIN = """
from ebmkit.samplers import LangevinSampler

class FastLangevin(LangevinSampler):
    '''Langevin with few steps (a test plugin).'''
    class Options(LangevinSampler.Options):
        n_steps: int = 3
"""


def test_plugin_is_discovered_lazily_with_its_distribution(plugin_env):
    _install_fake_dist(plugin_env, "fake-good", {"ebmkit.samplers": {"fast_langevin": "fakeplug_good:FastLangevin"}},
                       "fakeplug_good", GOOD_PLUGIN)
    assert "fakeplug_good" not in sys.modules  # nothing imported until asked for
    assert "fast_langevin" in SAMPLERS.names()
    entry = SAMPLERS.get("fast_langevin")
    assert entry.source == "fake-good"
    assert SAMPLERS.validate("fast_langevin")["n_steps"] == 3
    rows = {r["name"]: r for r in SAMPLERS.list()}
    assert rows["fast_langevin"]["source"] == "fake-good" and rows["langevin"]["source"] == "built-in"


def test_broken_plugin_is_reported_and_breaks_nothing_else(plugin_env):
    _install_fake_dist(plugin_env, "fake-broken", {"ebmkit.samplers": {"broken": "fakeplug_broken:Nope"}},
                       "fakeplug_broken", "raise ImportError('missing dependency xyz')\n")
    with pytest.raises(ComponentError) as exc:
        SAMPLERS.get("broken")
    assert "fake-broken" in str(exc.value) and "missing dependency xyz" in str(exc.value)
    rows = {r["name"]: r for r in SAMPLERS.list()}
    assert rows["broken"]["error"] and rows["langevin"]["error"] is None
    assert SAMPLERS.validate("langevin")["n_steps"] == 30


def test_two_packages_claiming_one_name_is_an_error_naming_both(plugin_env):
    for dist in ("fake-one", "fake-two"):
        _install_fake_dist(plugin_env, dist, {"ebmkit.samplers": {"twin": "fakeplug_good:FastLangevin"}})
    (plugin_env / "fakeplug_good.py").write_text(textwrap.dedent(GOOD_PLUGIN))
    with pytest.raises(ComponentError) as exc:
        SAMPLERS.get("twin")
    assert "fake-one" in str(exc.value) and "fake-two" in str(exc.value)


def test_plugin_cannot_shadow_a_builtin(plugin_env):
    _install_fake_dist(plugin_env, "fake-shadow", {"ebmkit.samplers": {"langevin": "fakeplug_good:FastLangevin"}},
                       "fakeplug_good", GOOD_PLUGIN)
    with pytest.raises(ComponentError, match="built-in, fake-shadow"):
        SAMPLERS.get("langevin")


def test_no_plugins_switch(plugin_env, monkeypatch):
    _install_fake_dist(plugin_env, "fake-good", {"ebmkit.samplers": {"fast_langevin": "fakeplug_good:FastLangevin"}},
                       "fakeplug_good", GOOD_PLUGIN)
    monkeypatch.setenv("EBMKIT_NO_PLUGINS", "1")
    assert "fast_langevin" not in SAMPLERS.names()
    with pytest.raises(ComponentError, match="unknown sampler"):
        SAMPLERS.get("fast_langevin")


# -- a plugin that breaks its kind's contract is refused when discovered, and breaks nothing else --
PLAIN_OPTIONS = """
from pydantic import BaseModel
from ebmkit.samplers import LangevinSampler

class PlainOptions(LangevinSampler):
    '''Options from plain pydantic, without the fields Langevin's methods read.'''
    class Options(BaseModel):
        n_steps: int = 3

class NoOptions(LangevinSampler):
    '''Options = None under a base class that reads options.'''
    Options = None
"""

BROKEN = {"plain_options": ("fakeplug_contract:PlainOptions", "Options must be a subclass of ebmkit.registry.Options"),
          "no_options": ("fakeplug_contract:NoOptions", "Options is None, but its base class LangevinSampler reads"),
          "no_import": ("fakeplug_missing:Gone", "failed to import: ModuleNotFoundError")}


def _cli(args, pythonpath):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "1000"}  # one table row per line
    env.pop("EBMKIT_NO_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "ebmkit", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_plugin_breaking_the_contract_is_listed_broken_and_every_command_still_works(plugin_env):
    _install_fake_dist(plugin_env, "fake-contract", {"ebmkit.samplers": {n: t for n, (t, _) in BROKEN.items()}},
                       "fakeplug_contract", PLAIN_OPTIONS)
    for name, (_, reason) in BROKEN.items():
        with pytest.raises(ComponentError, match=f"samplers '{name}' from plugin package 'fake-contract'") as err:
            SAMPLERS.get(name)
        assert reason in str(err.value) and "\n" not in str(err.value)

    listed = _cli(["list", "samplers"], plugin_env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if line.startswith("│")}
    for name, (_, reason) in BROKEN.items():
        assert "broken: " in rows[name] and reason in rows[name], rows[name]
    assert "broken" not in rows["langevin"]
    assert "3 plugin component(s) failed to load" in listed.stderr
    shown = _cli(["show", "plain_options"], plugin_env)
    assert_one_line_error(shown, "fake-contract", "ebmkit.registry.Options")
    assert "KIND/NAME" not in shown.stderr  # it was found: the hint for an unknown name would mislead
    for args in (["show", "langevin"], ["list", "--compatible"], ["train", "--recipe", "drl", "--dry-run"]):
        result = _cli(args, plugin_env)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)
    assert "plain_options" not in _cli(["list", "--compatible"], plugin_env).stdout


def test_builtin_components_meet_the_options_contract():
    from ebmkit.registry import REGISTRIES, options_problem

    for reg in REGISTRIES.values():
        for name in reg.names():
            assert options_problem(reg.get(name).obj) is None, (reg.kind, name)


def test_in_process_registration_refuses_a_plain_pydantic_options_class():
    from pydantic import BaseModel

    reg = Registry("samplers")

    class Mine:
        class Options(BaseModel):
            n: int = 1

    with pytest.raises(ComponentError, match="samplers 'mine': Options must be a subclass of ebmkit.registry.Options"):
        reg.register("mine")(Mine)


NEW_CAPABILITY = """
from ebmkit.compose import Need
from ebmkit.divergences.recovery_likelihood import RecoveryLikelihood
from ebmkit.samplers import LangevinSampler

class ReplayLangevin(LangevinSampler):
    '''Langevin that keeps a replay buffer (a test plugin).'''
    capabilities = {"replay_state": "a replay buffer of past negatives, kept across steps"}

    @classmethod
    def provides(cls, options):
        return super().provides(options) | {"replay_state"}

class NeedsReplay(RecoveryLikelihood):
    '''Recovery likelihood that reads the sampler's replay buffer (a test plugin).'''
    @classmethod
    def needs(cls, options):
        return (*super().needs(options), Need("sampler", "replay_state"))

class NeedsUndeclared(RecoveryLikelihood):
    '''Needs a capability nobody introduces.'''
    @classmethod
    def needs(cls, options):
        return (Need("sampler", "telepathy"),)
"""


def test_a_plugin_introduces_a_capability_of_its_own(plugin_env):
    from ebmkit import compose

    _install_fake_dist(plugin_env, "fake-caps", {
        "ebmkit.samplers": {"replay_langevin": "fakeplug_caps:ReplayLangevin"},
        "ebmkit.divergences": {"needs_replay": "fakeplug_caps:NeedsReplay",
                               "needs_undeclared": "fakeplug_caps:NeedsUndeclared"}}, "fakeplug_caps", NEW_CAPABILITY)
    assembly = {"schedule": "drl", "energy": "drl", "sampler": "replay_langevin", "divergence": "needs_replay"}
    assert compose.problems(assembly) == []
    assert compose.known_capabilities()["replay_state"] == "a replay buffer of past negatives, kept across steps"
    (unmet,) = compose.problems({**assembly, "sampler": "langevin"})
    assert unmet.startswith("divergence 'needs_replay' needs a sampler that provides 'replay_state' — a replay "
                            "buffer of past negatives, kept across steps; sampler 'langevin' does not. ")
    assert "Samplers that do at their defaults: replay_langevin" in unmet
    with pytest.raises(ComponentError, match="divergences 'needs_undeclared' declares unknown capability 'telepathy'"):
        compose.problems({**assembly, "divergence": "needs_undeclared"})
