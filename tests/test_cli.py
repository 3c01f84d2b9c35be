"""The command line: bad input gets one line naming the problem, exit code ≠ 0, no traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ebmkit import Recipe
from ebmkit.training import Trainer
from helpers import assert_one_line_error


def run(*args, cwd=None):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "ebmkit", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    recipe = Recipe.from_name("drl").override({
        "network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 4,
    })
    Trainer(recipe, run_dir, progress=False).fit()
    return run_dir


def test_unknown_recipe():
    assert_one_line_error(run("train", "--recipe", "nope"), "unknown recipe 'nope'", "drl")


def test_bad_option_value():
    assert_one_line_error(run("train", "--set", "train.lr=abc"), "train.lr", "'abc'")


def test_unknown_component_option():
    assert_one_line_error(run("train", "--set", "sampler.n_stepz=3"), "n_stepz")


def test_unknown_dataset_lists_available():
    assert_one_line_error(run("train", "--data", "nope"), "nope", "8gaussians", "checkerboard")


def test_missing_data_file(tmp_path):
    assert_one_line_error(run("train", "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "r")),
                          "missing.npy", "not found")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_truncated_checkpoint(trained_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    assert_one_line_error(run("sample", str(broken), "-n", "5", "-o", str(tmp_path / "s.npy")),
                          "model.safetensors", "corrupt or truncated")
    ckpt = broken / "checkpoint" / "optimizer.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:-10])
    assert_one_line_error(run("train", "--resume", str(broken), "--steps", "8"), "optimizer.safetensors",
                          "corrupt or truncated")


def test_resume_may_change_threads_but_not_the_recipe(trained_run, tmp_path):
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(trained_run, resumed)
    before = (resumed / "stats.jsonl").read_text()
    assert_one_line_error(run("train", "--resume", str(resumed), "--set", "train.lr=0.5"),
                          "--resume continues the saved recipe", "train.threads", "['train.lr']")
    assert (resumed / "stats.jsonl").read_text() == before  # the refused call touched nothing
    r = run("train", "--resume", str(resumed), "--steps", "6", "--set", "train.threads=1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "at step 4" in r.stderr
    config = json.loads((resumed / "config.json").read_text())["recipe"]
    assert config["train"]["threads"] == 1 and config["train"]["steps"] == 6
    assert json.loads((resumed / "checkpoint" / "state.json").read_text())["step"] == 6


def test_not_a_run_directory(tmp_path):
    assert_one_line_error(run("eval", str(tmp_path)), "config.json not found")


def test_sample_eval_show_list(trained_run, tmp_path):
    out = tmp_path / "s.npy"
    r = run("sample", str(trained_run), "-n", "7", "-o", str(out))
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (7, 2) and np.isfinite(x).all()

    r = run("eval", str(trained_run), "-n", "200", "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert {"sw", "mmd", "energy_auc", "grid_log_likelihood", "true_log_likelihood"} <= set(metrics)
    assert json.loads((trained_run / "eval.json").read_text())["sw"] == metrics["sw"]

    r = run("show", "drl", "--format", "json")
    assert r.returncode == 0
    assert Recipe.create(**json.loads(r.stdout)) == Recipe.from_name("drl")
    r = run("show", "drl")
    assert "sampler:" in r.stdout and "n_steps: 30" in r.stdout

    r = run("list")
    assert r.returncode == 0
    for name in ("drl", "langevin", "recovery_likelihood", "checkerboard", "cosine_logsnr", "built-in"):
        assert name in r.stdout
    assert_one_line_error(run("list", "nope"), "unknown component kind 'nope'", "samplers")


def test_sample_and_eval_set_the_trained_samplers_generation_options(trained_run, tmp_path):
    import torch

    from ebmkit.model import EnergyModel

    out, default = tmp_path / "k9.npy", tmp_path / "k3.npy"
    for path, extra in ((out, ["--set", "sampler.n_steps=9", "--set", "sampler.denoise=true"]), (default, [])):
        r = run("sample", str(trained_run), "-n", "50", "--seed", "4", "-o", str(path), *extra)
        assert r.returncode == 0, r.stderr
    model = EnergyModel.from_run(trained_run, sampler={"n_steps": 9, "denoise": True})
    assert model.sampler.config.n_steps == 9 and model.sampler.config.denoise
    expected = model.generate(50, generator=torch.Generator().manual_seed(4)).numpy()
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert not np.allclose(np.load(out), np.load(default), atol=1e-3)  # the trained 3 steps, no denoising

    r = run("eval", str(trained_run), "-n", "100", "--json", "--set", "sampler.n_steps=9")
    assert r.returncode == 0, r.stderr
    assert json.loads((trained_run / "eval.json").read_text())["sampler"] == {"n_steps": 9}
    for bad in ("train.lr=1", "sampler.name=cooperative", "sampler=cooperative"):
        assert_one_line_error(run("sample", str(trained_run), "-o", str(tmp_path / "x.npy"), "--set", bad),
                              f"got '{bad.partition('=')[0]}'", "sampler.KEY=VALUE")
    assert_one_line_error(run("eval", str(trained_run), "--set", "sampler.n_stepz=9"), "n_stepz", "n_steps")
    assert not (tmp_path / "x.npy").exists()


def test_show_prints_a_components_defaults_with_their_descriptions():
    import yaml

    from ebmkit.registry import SAMPLERS, SCHEDULES

    r = run("show", "langevin")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == SAMPLERS.validate("langevin")
    assert r.stdout.startswith("# samplers 'langevin' (built-in): Recovery-likelihood Langevin")
    assert "n_steps: 30  # K, Langevin steps per level" in r.stdout
    r = run("show", "cooperative")  # a nested group: its description on the line above it
    assert "# sampler spec of the refinement stage\nrefine:\n  name: langevin" in r.stdout
    r = run("show", "schedules/drl", "--format", "json")  # 'drl' alone is the recipe
    assert json.loads(r.stdout) == SCHEDULES.validate("drl")
    assert run("show", "recipes/drl").stdout == run("show", "drl").stdout
    assert_one_line_error(run("show", "samplers/nope"), "unknown sampler 'nope'", "langevin", "cooperative")
    assert_one_line_error(run("show", "nope"), "unknown recipe 'nope'", "KIND/NAME")


def test_show_prints_every_kind_that_shares_a_name():
    from typer.testing import CliRunner

    from ebmkit.cli import app
    from ebmkit.registry import NETWORKS, SAMPLERS

    class Twin:
        """A name two kinds share."""

    for reg in (NETWORKS, SAMPLERS):
        reg.register("twin_for_show")(Twin)
    try:
        text = CliRunner().invoke(app, ["show", "twin_for_show"]).output
        assert "# networks 'twin_for_show' (in-process: test_cli): A name two kinds share." in text
        assert "# samplers 'twin_for_show'" in text
        assert json.loads(CliRunner().invoke(app, ["show", "twin_for_show", "-f", "json"]).output) == {
            "networks": {"name": "twin_for_show"}, "samplers": {"name": "twin_for_show"}}
    finally:
        for reg in (NETWORKS, SAMPLERS):
            del reg._builtin["twin_for_show"]


def test_dry_run_prints_the_resolved_recipe():
    r = run("train", "--data", "checkerboard", "--steps", "7", "--set", "sampler.n_steps=4", "--dry-run")
    assert r.returncode == 0, r.stderr
    recipe = json.loads(r.stdout)
    assert recipe["data"] == {"name": "checkerboard"}
    assert recipe["train"]["steps"] == 7 and recipe["sampler"]["n_steps"] == 4


def test_set_swaps_cdrl_sampler_into_drl_and_reaches_its_nested_options():
    """`drl` with CDRL's parts swapped in by --set is `cdrl` (issue 3's declarative assembly),
    and a component named by one --set takes options of its nested specs in the next."""
    r = run("train", "--recipe", "drl", "--set", "sampler=cooperative", "--set", "sampler.refine.n_steps=15",
            "--set", "energy.step_cap=1.0",
            "--set", "sampler.initializer.width=64", "--set", "schedule=cosine_logsnr",
            "--set", "divergence.shared_noise=true", "--dry-run")
    assert r.returncode == 0, r.stderr
    swapped, cdrl = json.loads(r.stdout), Recipe.from_name("cdrl").model_dump(mode="json")
    for field in ("schedule", "network", "energy", "sampler", "divergence"):
        assert swapped[field] == cdrl[field], field
    r = run("train", "--set", "sampler=cooperative", "--set", "sampler.refine.n_steps=5", "--dry-run")
    assert json.loads(r.stdout)["sampler"]["refine"]["n_steps"] == 5
    assert_one_line_error(run("train", "--set", "sampler=cooperative", "--set", "sampler.nope.x=1", "--dry-run"),
                          "'nope' is not a group of options")


def test_set_gives_options_to_the_data_set_named_by_data():
    r = run("train", "--set", "data.limit=300", "--data", "fashion_mnist", "--set", "data.split=test", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"] == {"name": "fashion_mnist", "root": None, "split": "test", "hflip": False,
                                            "limit": 300}
    assert_one_line_error(run("train", "--data", "checkerboard", "--set", "data.limit=3", "--dry-run"),
                          "datasets 'checkerboard': bad option", "limit")


def test_bench_toy_writes_table_json_and_picture(tmp_path):
    out = tmp_path / "bench"
    r = run("bench", "toy", "--recipes", "drl", "--data", "8gaussians,checkerboard", "--seeds", "2",
            "--set", "train.steps=3", "--set", "network.width=16", "--set", "sampler.n_steps=2",
            "--set", "train.batch_size=32", "--set", "eval.n_samples=400", "--set", "eval.grid_resolution=32",
            "--jobs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "toy.json").read_text())
    assert [(c["recipe"], c["data"], c["seeds"]) for c in report["summary"]] == [
        ("drl", "8gaussians", 2), ("drl", "checkerboard", 2)]
    for cell in report["summary"]:
        runs = [x for x in report["runs"] if x["data"] == cell["data"]]
        sw = [x["sw"] for x in runs]
        assert cell["sw"]["mean"] == pytest.approx(sum(sw) / 2)
        assert cell["sw"]["std"] == pytest.approx(abs(sw[0] - sw[1]) / 2 ** 0.5)
        assert sw[0] != sw[1]  # two seeds, two runs
        assert 0 <= cell["energy_auc"]["mean"] <= 1 and cell["true_energy_auc"]["mean"] > 0.7
    table = (out / "toy.md").read_text()
    assert "ebmkit bench toy --recipes drl --data 8gaussians,checkerboard --seeds 2" in table
    assert table.count("| drl |") == 2
    assert (out / "toy.png").stat().st_size > 10_000
    assert (out / "runs" / "drl-checkerboard-s1" / "eval.json").is_file()


def test_bench_toy_reuses_finished_cells_of_the_same_recipe(tmp_path):
    from ebmkit.bench import finished_cell, recipe_for

    out = tmp_path / "bench"
    changes = {"train.steps": 3, "network.width": 16, "sampler.n_steps": 2, "train.batch_size": 32,
               "eval.n_samples": 300, "eval.grid_resolution": 32}
    tiny = ["--recipes", "drl", "--data", "8gaussians", "--out", str(out),
            *(arg for key, value in changes.items() for arg in ("--set", f"{key}={value}"))]
    assert run("bench", "toy", "--seeds", "1", *tiny).returncode == 0
    weights = out / "runs" / "drl-8gaussians-s0" / "model.safetensors"
    first, stamp = json.loads((out / "toy.json").read_text())["runs"], weights.stat().st_mtime_ns

    r = run("bench", "toy", "--seeds", "2", *tiny)  # seed 0 is read back, seed 1 trains
    assert r.returncode == 0, r.stderr
    assert "seed 0: SW" in r.stderr and "from its earlier run" in r.stderr
    runs = json.loads((out / "toy.json").read_text())["runs"]
    assert runs[0] == first[0] and weights.stat().st_mtime_ns == stamp
    assert runs[1]["seed"] == 1 and runs[1]["sw"] != runs[0]["sw"]

    seed1 = out / "runs" / "drl-8gaussians-s1"
    (seed1 / "cell.json").write_text('{"recipe": ')  # as if torn by an interruption: seed 1 trains again
    r = run("bench", "toy", "--seeds", "2", *tiny)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("from its earlier run") == 1 and weights.stat().st_mtime_ns == stamp
    assert json.loads((seed1 / "cell.json").read_text())["row"]["seed"] == 1

    assert finished_cell(seed1, recipe_for("drl", "8gaussians", 1, changes))["seed"] == 1
    assert finished_cell(seed1, recipe_for("drl", "8gaussians", 1, {**changes, "train.lr": 5e-4})) is None
    assert finished_cell(seed1, recipe_for("drl", "8gaussians", 0, changes)) is None
    # recorded by an ebmkit before train.phases and train.loggers existed: the same recipe today
    record = json.loads((seed1 / "cell.json").read_text())
    for key in ("phases", "loggers"):
        del record["recipe"]["train"][key]
    (seed1 / "cell.json").write_text(json.dumps(record))
    assert finished_cell(seed1, recipe_for("drl", "8gaussians", 1, changes))["seed"] == 1
    record["recipe"]["train"]["momentum"] = 0.9  # an option this ebmkit does not know: trained again
    (seed1 / "cell.json").write_text(json.dumps(record))
    assert finished_cell(seed1, recipe_for("drl", "8gaussians", 1, changes)) is None


def test_bench_toy_table_writes_a_blown_up_cell_in_exponent_form():
    from ebmkit.bench import markdown, summarize

    rows = [{"recipe": "drl", "data": d, "seed": s, "sw": sw, "seconds": 60.0}
            for d, sws in (("25gaussians", (1.2e6, 1.4e6)), ("8gaussians", (0.04, 0.06))) for s, sw in enumerate(sws)]
    table = markdown(summarize(rows), {"command": "ebmkit bench toy", "date": "", "machine": "", "versions": ""})
    assert "| drl | 25gaussians | 1.30e+06 ± 1.41e+05 |" in table
    assert "| drl | 8gaussians | 0.050 ± 0.014 |" in table


def test_bench_toy_refuses_unknown_recipe_and_image_data(tmp_path):
    assert_one_line_error(run("bench", "toy", "--recipes", "drl,nope", "--seeds", "1", "--out", str(tmp_path)),
                          "unknown recipe 'nope'")
    assert_one_line_error(run("bench", "toy", "--data", "mnist", "--out", str(tmp_path)), "mnist")
