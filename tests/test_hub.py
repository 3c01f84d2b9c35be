"""The Hub, end to end on 127.0.0.1: push with huggingface_hub's own upload code, pull from `olah`.

Downloads go to `olah` 0.5.4, a real server of the Hub's download API, serving local git repos
offline. Uploads go to tests/hub_upload_server.py (the Hub's create-repo / preupload / commit
calls; its docstring lists what it simplifies), which writes the git repos olah serves. The
client is always the installed huggingface_hub, in a subprocess, because it reads HF_ENDPOINT
when it is imported.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from ebmkit import EnergyModel, Recipe
from ebmkit.evaluation import evaluate
from ebmkit.data import DATASETS
from ebmkit.hub import HubError, parse_hub_id
from ebmkit.training import Trainer
from ebmkit.training.checkpoint import load_tensors, write_json

from hub_upload_server import commit_files, git, local_hub

TOKEN = "hf_ebmkit_test_token"
N, SEED = 256, 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """olah serving <root>/mirrors read-only, and the upload server writing there."""
    with local_hub(tmp_path_factory.mktemp("hub"), TOKEN) as served:
        yield served


def cli(hub, *args, endpoint="olah", token=False, offline=False, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": str(hub["hf_home"]), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "EBMKIT_NO_PLUGINS": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200",
                "HF_ENDPOINT": hub["upload"].url if endpoint == "upload" else hub["olah"]})
    if endpoint == "dead":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    if token:
        env["HF_TOKEN"] = TOKEN
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def ebmkit(hub, *args, **kw):
    result = cli(hub, sys.executable, "-m", "ebmkit", *args, **kw)
    assert result.returncode == 0, result.stderr
    return result


def one_line_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def train(run_dir, seed):
    recipe = Recipe.from_name("drl").override({
        "network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 4,
        "train.seed": seed, "eval.n_samples": 200, "eval.n_projections": 20, "eval.grid_resolution": 16,
    })
    model = Trainer(recipe, run_dir, progress=False).fit()
    return run_dir, model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny trained runs; the first also evaluated (its eval.json goes into the card)."""
    root = tmp_path_factory.mktemp("runs")
    a, model_a = train(root / "a", seed=0)
    metrics = evaluate(model_a, DATASETS.build(model_a.recipe.data), model_a.recipe.eval)
    write_json({"weights": "model.safetensors", "n_samples": 200, **metrics}, a / "eval.json")
    b, _ = train(root / "b", seed=1)
    return a, b


def samples_of(run_dir, weights="model.safetensors"):
    model = EnergyModel.from_run(run_dir, weights)
    return model.generate(N, generator=torch.Generator().manual_seed(SEED)).numpy()


def sample_cli(hub, source, out, **kw):
    ebmkit(hub, "sample", source, "-n", str(N), "--seed", str(SEED), "-o", str(out), **kw)
    return np.load(out)


def same_tensors(path_a, path_b):
    a, b = load_tensors(path_a), load_tensors(path_b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- push -> pull -> identical samples ---------------------------------------------------------
def test_push_then_pull_gives_identical_samples(hub, runs, tmp_path):
    run_a, _ = runs
    pushed = ebmkit(hub, "hub", "push", str(run_a), "alice/toy", "--private", endpoint="upload", token=True)
    assert "alice/toy" in pushed.stderr
    repo = hub["mirrors"] / "models" / "alice" / "toy"
    assert set(git(repo, "ls-tree", "--name-only", "main").split()) == {
        ".gitattributes", "README.md", "config.json", "density.png", "model.safetensors"}
    assert hub["upload"].private["alice/toy"] is True

    # the CLI: hub pull --out, then sample/eval straight from hf://
    pulled = ebmkit(hub, "hub", "pull", "alice/toy", "--out", str(tmp_path / "pulled"))
    folder = Path(pulled.stdout.strip())
    assert folder == tmp_path / "pulled"
    assert same_tensors(folder / "model.safetensors", run_a / "model.safetensors")
    assert json.loads((folder / "config.json").read_text())["recipe"] == json.loads(
        (run_a / "config.json").read_text())["recipe"]
    expected = samples_of(run_a)
    np.testing.assert_array_equal(sample_cli(hub, "hf://alice/toy", tmp_path / "s.npy"), expected)
    evaluated = json.loads(ebmkit(hub, "eval", "hf://alice/toy", "-n", "200", "--json").stdout)
    assert evaluated["sw"] == pytest.approx(json.loads((run_a / "eval.json").read_text())["sw"], rel=1e-6)

    # the Python API: Recipe/EnergyModel.from_pretrained, and huggingface_hub's snapshot_download
    script = (
        "import numpy as np, torch, sys\n"
        "from huggingface_hub import snapshot_download\n"
        "from ebmkit import EnergyModel, Recipe\n"
        "g = lambda: torch.Generator().manual_seed(%d)\n"
        "m = EnergyModel.from_pretrained('alice/toy')\n"
        "np.save(sys.argv[1], m.generate(%d, generator=g()).numpy())\n"
        "folder = snapshot_download('alice/toy', revision='main')\n"
        "np.save(sys.argv[2], EnergyModel.from_run(folder).generate(%d, generator=g()).numpy())\n"
        "np.save(sys.argv[3], Recipe.from_pretrained('alice/toy').generate(%d, generator=g()).numpy())\n"
        % (SEED, N, N, N)
    )
    paths = [tmp_path / f"{name}.npy" for name in "pqr"]
    result = cli(hub, sys.executable, "-c", script, *map(str, paths))
    assert result.returncode == 0, result.stderr
    for path in paths:
        np.testing.assert_array_equal(np.load(path), expected)

    # offline: the cache alone serves it, with the Hub unreachable
    offline = sample_cli(hub, "hf://alice/toy", tmp_path / "o.npy", endpoint="dead", offline=True)
    np.testing.assert_array_equal(offline, expected)


def test_revision_pinning_gives_older_weights(hub, runs, tmp_path):
    run_a, run_b = runs
    first = ebmkit(hub, "hub", "push", str(run_a), "alice/pinned", endpoint="upload", token=True)
    second = ebmkit(hub, "hub", "push", str(run_b), "alice/pinned", endpoint="upload", token=True)
    commit_a = first.stderr.split("commit ")[-1].split()[0]
    commit_b = second.stderr.split("commit ")[-1].split()[0]
    assert commit_a != commit_b
    repo = hub["mirrors"] / "models" / "alice" / "pinned"
    assert git(repo, "rev-parse", "main") == commit_b

    old = Path(ebmkit(hub, "hub", "pull", "alice/pinned", "--revision", commit_a).stdout.strip())
    new = Path(ebmkit(hub, "hub", "pull", "alice/pinned").stdout.strip())
    assert same_tensors(old / "model.safetensors", run_a / "model.safetensors")
    assert same_tensors(new / "model.safetensors", run_b / "model.safetensors")
    assert not same_tensors(old / "model.safetensors", new / "model.safetensors")
    np.testing.assert_array_equal(sample_cli(hub, f"hf://alice/pinned@{commit_a}", tmp_path / "a.npy"),
                                  samples_of(run_a))

    # a branch: push --revision dev leaves main alone
    ebmkit(hub, "hub", "push", str(run_a), "alice/pinned", "--revision", "dev", endpoint="upload", token=True)
    assert git(repo, "rev-parse", "main") == commit_b
    dev = Path(ebmkit(hub, "hub", "pull", "alice/pinned", "--revision", "dev").stdout.strip())
    assert same_tensors(dev / "model.safetensors", run_a / "model.safetensors")


def test_raw_weights_push(hub, runs, tmp_path):
    run_a, _ = runs
    ebmkit(hub, "hub", "push", str(run_a), "alice/raw", "--raw", endpoint="upload", token=True)
    folder = Path(ebmkit(hub, "hub", "pull", "alice/raw", "--out", str(tmp_path / "raw")).stdout.strip())
    assert json.loads((folder / "config.json").read_text())["weights"] == "raw"
    assert same_tensors(folder / "model.safetensors", run_a / "checkpoint" / "model.safetensors")
    assert not same_tensors(folder / "model.safetensors", run_a / "model.safetensors")
    card = (folder / "README.md").read_text()
    assert "raw (non-averaged) weights" in card and "Not evaluated" in card  # eval.json was of the EMA weights


# -- errors: one line, no traceback ------------------------------------------------------------
def test_push_without_token_is_refused(hub, runs):
    one_line_error(cli(hub, sys.executable, "-m", "ebmkit", "hub", "push", str(runs[0]), "alice/notoken",
                       endpoint="upload"), "alice/notoken", "HF_TOKEN")


def test_missing_repo_and_revision(hub, runs):
    one_line_error(cli(hub, sys.executable, "-m", "ebmkit", "hub", "pull", "alice/nothing"), "alice/nothing")
    one_line_error(cli(hub, sys.executable, "-m", "ebmkit", "sample", "hf://nobody/cached", offline=True),
                   "nobody/cached", "not in the local Hub cache")


def test_model_needing_a_missing_plugin_names_the_package(hub, runs, tmp_path):
    """A repo whose config names a plugin's sampler: loading says what to install."""
    run_a, _ = runs
    config = json.loads((run_a / "config.json").read_text())
    config["recipe"]["sampler"] = {"name": "ring_langevin", "n_steps": 3}
    config["provenance"]["sampler"] = {"name": "ring_langevin", "source": "ebmkit-plugin-example"}
    repo = hub["mirrors"] / "models" / "alice" / "needs-plugin"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    commit_files(repo, "main", {"config.json": json.dumps(config, indent=2).encode(),
                                "model.safetensors": (run_a / "model.safetensors").read_bytes()}, [], "add", None)
    one_line_error(cli(hub, sys.executable, "-m", "ebmkit", "sample", "hf://alice/needs-plugin", "-o",
                       str(tmp_path / "s.npy")), "hf://alice/needs-plugin", "sampler 'ring_langevin'",
                   "pip install ebmkit-plugin-example")


# -- in process: the card and the ids ------------------------------------------------------------
def test_model_card_has_metadata_metrics_and_picture(runs, tmp_path):
    run_a, _ = runs
    folder = EnergyModel.from_run(run_a).save_pretrained(tmp_path / "saved")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "ebmkit"
    assert {"ebmkit", "energy-based-model", "recipe:drl", "data:8gaussians"} <= set(card.data.tags)
    sw = json.loads((run_a / "eval.json").read_text())["sw"]
    assert f"| sw | {sw:.4f} |" in card.text
    assert "![model density and samples](density.png)" in card.text
    assert (folder / "density.png").read_bytes() == (run_a / "density.png").read_bytes()
    assert "name: drl" in card.text  # the recipe, as YAML
    # what save_pretrained wrote loads back to the same model
    assert same_tensors(folder / "model.safetensors", run_a / "model.safetensors")
    np.testing.assert_array_equal(samples_of(folder), samples_of(run_a))


def test_model_card_names_in_process_code_instead_of_installing_it(runs):
    from ebmkit.hub.card import model_card

    run_a, _ = runs
    config = json.loads((run_a / "config.json").read_text())
    config["provenance"]["sampler"] = {"name": "mala", "source": "in-process: plugin_sampler"}
    config["provenance"]["network"] = {"name": "ringnet", "source": "ebmkit-plugin-example"}
    text = str(model_card(config, "alice/mala"))
    assert "pip install torch-ebmkit ebmkit-plugin-example\n" in text
    assert "registered in-process by `plugin_sampler`: import that code before loading" in text
    assert "| sampler | `mala` | in-process: plugin_sampler |" in text


def test_hub_ids():
    assert parse_hub_id("hf://org/name@v1") == ("org/name", "v1")
    assert parse_hub_id("org/name") == ("org/name", None)
    for bad in ("name", "hf://", "a/b/c", "org/na me"):
        with pytest.raises(HubError, match="not a Hub model id"):
            parse_hub_id(bad)


# -- the zoo ----------------------------------------------------------------------------------
ZOO_SETS = ["--set", "train.steps=3", "--set", "network.width=16", "--set", "sampler.n_steps=2", "--set",
            "train.batch_size=32", "--set", "eval.n_samples=200", "--set", "eval.grid_resolution=16", "--set",
            "eval.n_projections=20"]


def test_publish_zoo_pushes_every_model_once_and_each_pulls_back(hub, tmp_path):
    bench = tmp_path / "bench"
    ebmkit(hub, "bench", "toy", "--recipes", "drl,drl_vp", "--data", "8gaussians,checkerboard", "--seeds", "1",
           "--out", str(bench), *ZOO_SETS)
    args = ("hub", "publish-zoo", "zoo", "--from", str(bench), "--recipes", "drl,drl_vp", "--data",
            "8gaussians,checkerboard", *ZOO_SETS)  # the cells' --set changes: each matches its recipe
    dry = ebmkit(hub, *args, "--dry-run", endpoint="upload", token=True)
    assert "dry run: 4 models, 0 to train first; nothing pushed" in dry.stderr
    assert not (hub["mirrors"] / "models" / "zoo").exists()

    first = ebmkit(hub, *args, "--yes", endpoint="upload", token=True)
    assert "published 4 of 4 models" in first.stderr
    rows = (bench / "zoo.md").read_text().splitlines()
    for recipe in ("drl", "drl_vp"):
        for data in ("8gaussians", "checkerboard"):
            run = bench / "runs" / f"{recipe}-{data}-s0"
            repo = f"zoo/{recipe}-{data}"
            pulled = sample_cli(hub, f"hf://{repo}", tmp_path / f"{recipe}-{data}.npy")
            np.testing.assert_array_equal(pulled, samples_of(run))  # the same samples for the same seed
            sw = json.loads((run / "eval.json").read_text())["sw"]
            assert any(f"`{repo}` | {recipe} | {data} | {sw:.3f} |" in row for row in rows), rows
            card = ModelCard(git(hub["mirrors"] / "models" / "zoo" / f"{recipe}-{data}", "show", "main:README.md"))
            assert card.data.to_dict()["ebmkit"]["metrics"]["sw"] == sw
            sets = " ".join(ZOO_SETS)
            assert f"ebmkit train --recipe {recipe} --data {data} {sets} --set train.seed=0 --set train.threads=1" \
                in card.text

    commits = git(hub["mirrors"] / "models" / "zoo" / "drl-8gaussians", "rev-parse", "main")
    second = ebmkit(hub, *args, "--yes", endpoint="upload", token=True)
    assert "published 0 of 4 models" in second.stderr and second.stderr.count(": up to date") == 4
    assert git(hub["mirrors"] / "models" / "zoo" / "drl-8gaussians", "rev-parse", "main") == commits


def test_publish_zoo_dry_run_says_what_it_would_train_and_for_how_long(hub, tmp_path):
    dry = ebmkit(hub, "hub", "publish-zoo", "zoo", "--from", str(tmp_path / "bench"), "--recipes", "ddaebm_paper,drl",
                 "--data", "pinwheel", "--dry-run")
    assert f"zoo/ddaebm_paper-pinwheel ← train 180,000 steps into {tmp_path / 'bench' / 'runs'}" in dry.stderr
    assert "zoo/drl-pinwheel ← train 1,800 steps into" in dry.stderr
    assert "dry run: 2 models, 2 to train first; nothing pushed" in dry.stderr
    assert not (tmp_path / "bench").exists()


def test_publish_zoo_trains_again_a_cell_of_an_older_preset(hub, tmp_path):
    """A finished cell whose recorded recipe is not the preset's any more (a preset retuned since)
    is not published as that preset: the dry run lists it to train."""
    from ebmkit.bench import recipe_for

    run = tmp_path / "bench" / "runs" / "drl-pinwheel-s0"
    run.mkdir(parents=True)
    older = recipe_for("drl", "pinwheel", 0, {"train.lr": 5e-4})
    (run / "cell.json").write_text(json.dumps({"recipe": older.model_dump(mode="json"),
                                               "row": {"recipe": "drl", "data": "pinwheel", "seed": 0, "sw": 0.1}}))
    (run / "model.safetensors").write_bytes(b"weights of the older preset")
    (run / "eval.json").write_text("{}")
    dry = ebmkit(hub, "hub", "publish-zoo", "zoo", "--from", str(tmp_path / "bench"), "--recipes", "drl", "--data",
                 "pinwheel", "--dry-run")
    assert "zoo/drl-pinwheel ← train 1,800 steps into" in dry.stderr
    assert "dry run: 1 models, 1 to train first; nothing pushed" in dry.stderr
    assert (run / "model.safetensors").read_bytes() == b"weights of the older preset"  # a dry run touches nothing


def test_publish_zoo_skips_a_run_that_diverged_and_says_so(hub, tmp_path):
    from ebmkit.bench import recipe_for

    bench = tmp_path / "bench"
    run = bench / "runs" / "drl-pinwheel-s0"  # a benchmark cell the divergence watch stopped: no weights
    run.mkdir(parents=True)
    row = {"recipe": "drl", "data": "pinwheel", "seed": 0, "seconds": 1.0, "diverged_at": 7,
           "diverged": "sampler 'langevin' blew up at step 7"}
    (run / "cell.json").write_text(json.dumps({"recipe": recipe_for("drl", "pinwheel", 0, {}).model_dump(mode="json"),
                                               "row": row}))
    args = ("hub", "publish-zoo", "zoo-diverged", "--from", str(bench), "--recipes", "drl", "--data", "pinwheel")
    dry = ebmkit(hub, *args, "--dry-run")
    assert f"zoo-diverged/drl-pinwheel ← diverged at step 7 in {run}, not published" in dry.stderr
    assert "dry run: 1 models, 0 to train first; nothing pushed" in dry.stderr

    first = ebmkit(hub, *args, "--yes", endpoint="upload", token=True)
    assert "zoo-diverged/drl-pinwheel: not published, its run diverged at step 7: sampler 'langevin' blew up" in first.stderr
    assert "published 0 of 1 models, 0 up to date, 1 diverged" in first.stderr
    assert "| diverged at step 7, not published | drl | pinwheel | — | — | — |" in (bench / "zoo.md").read_text()
    assert not (hub["mirrors"] / "models" / "zoo-diverged").exists()
    assert not (run / "model.safetensors").exists()  # nothing was trained again


def test_publish_zoo_refuses_what_is_not_a_2d_preset_in_one_line(hub, tmp_path):
    one_line_error(cli(hub, sys.executable, "-m", "ebmkit", "hub", "publish-zoo", "zoo", "--from", str(tmp_path),
                       "--recipes", "drl_fmnist", "--dry-run"), "not a 2D preset: drl_fmnist", "drl, ")
    one_line_error(cli(hub, sys.executable, "-m", "ebmkit", "hub", "publish-zoo", "zoo", "--from", str(tmp_path),
                       "--data", "moons", "--dry-run"), "the zoo holds the toy sets 8gaussians")
