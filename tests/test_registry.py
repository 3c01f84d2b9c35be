"""The registry: lookup, option validation, and plugin discovery from real installed metadata."""

import sys
import textwrap

import pytest

import ebmkit  # noqa: F401  (registers built-ins)
from ebmkit.registry import SAMPLERS, SCHEDULES, ComponentError, Registry, refresh_plugins


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
