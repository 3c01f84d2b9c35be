"""The example plugin (plugins/ebmkit-plugin-example), installed as a real distribution: it is
listed with its distribution name, its recipe trains, and a model that needs it fails clearly
once its entry points are gone (EBMKIT_NO_PLUGINS=1 hides them, as an uninstall would)."""

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

PLUGIN = "ebmkit-plugin-example"


def run(*args, plugins=True):
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    env.pop("EBMKIT_NO_PLUGINS", None)
    if not plugins:
        env["EBMKIT_NO_PLUGINS"] = "1"
    return subprocess.run([sys.executable, "-m", "ebmkit", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def installed():
    try:
        metadata.distribution(PLUGIN)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{PLUGIN} is not installed: pip install -e plugins/{PLUGIN} (the README's test command does)")


def test_list_shows_the_plugin_with_its_distribution():
    result = run("list")
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    for name, kind in (("annealed_langevin", "samplers"), ("fourier_mlp", "networks"), ("rings_fourier", "recipes")):
        assert kind in rows[name] and PLUGIN in rows[name], rows.get(name)
    assert "broken" not in result.stdout


def test_recipe_trains_and_a_model_needing_it_fails_clearly_without_it(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--recipe", "rings_fourier", "--steps", "3", "--out", str(out), "--no-progress",
                 "--set", "network.width=16", "--set", "network.depth=1", "--set", "sampler.n_steps=3",
                 "--set", "train.batch_size=32")
    assert result.returncode == 0, result.stderr
    provenance = json.loads((out / "config.json").read_text())["provenance"]
    assert provenance["sampler"] == {"name": "annealed_langevin", "source": PLUGIN}
    assert provenance["network"] == {"name": "fourier_mlp", "source": PLUGIN}
    assert run("sample", str(out), "-n", "10", "-o", str(tmp_path / "s.npy")).returncode == 0

    gone = run("sample", str(out), "-n", "10", "-o", str(tmp_path / "t.npy"), plugins=False)
    assert gone.returncode != 0 and "Traceback" not in gone.stderr
    lines = [line for line in gone.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, gone.stderr
    assert "network 'fourier_mlp'" in lines[0] and f"pip install {PLUGIN}" in lines[0], lines[0]
