"""The trainer core: exact resume after SIGKILL, atomic checkpoints, clear errors."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ebmkit import Recipe
from ebmkit.training import CheckpointError, Trainer, TrainingError
from ebmkit.training.checkpoint import load_checkpoint
from helpers import assert_same_checkpoints, sigkill_after_checkpoint

TINY = [
    "--set", "network.width=16", "--set", "network.depth=1", "--set", "sampler.n_steps=5",
    "--set", "train.batch_size=64", "--set", "train.checkpoint_every=5", "--set", "train.log_every=5",
    "--set", "train.threads=1",
]


def _cli(*args, **kw):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ebmkit", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)



def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    steps = "400"
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    p = _cli("train", "--steps", steps, "--out", str(ref), "--no-progress", *TINY)
    assert p.wait(timeout=600) == 0, p.stderr.read()

    p = _cli("train", "--steps", steps, "--out", str(cut), "--no-progress", *TINY)
    killed_at = sigkill_after_checkpoint(p, cut, 100)
    assert 100 <= killed_at < int(steps)

    p = _cli("train", "--resume", str(cut), "--no-progress")
    assert p.wait(timeout=600) == 0, p.stderr.read()
    assert f"at step {killed_at}" in p.stderr.read()
    assert_same_checkpoints(ref, cut)
    # the log has no duplicated steps from the work redone after the kill
    steps_logged = [json.loads(line)["step"] for line in (cut / "stats.jsonl").read_text().splitlines()]
    assert steps_logged == sorted(set(steps_logged))


def _tiny_recipe(**train):
    return Recipe.from_name("drl").override({
        "network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32,
        "train.checkpoint_every": 4, **{f"train.{k}": v for k, v in train.items()},
    })


def test_truncated_checkpoint_is_detected(tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny_recipe(steps=8), run, progress=False).fit()
    weights = run / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(run / "checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Trainer(_tiny_recipe(steps=12), run, resume=True, progress=False).fit()


def test_existing_run_directory_is_never_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny_recipe(steps=4), run, progress=False).fit()
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(TrainingError, match="already exists"):
        Trainer(_tiny_recipe(steps=4), run, progress=False)
    assert (run / "model.safetensors").read_bytes() == before


def test_interrupted_checkpoint_swap_falls_back_to_the_previous_one(tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny_recipe(steps=8), run, progress=False).fit()
    # simulate a crash between "move old aside" and "move new into place"
    os.replace(run / "checkpoint", run / "checkpoint.old")
    files, state = load_checkpoint(run / "checkpoint")
    assert state["step"] == 8 and "model" in files


def test_run_directory_contents_and_reload(tmp_path):
    from ebmkit.model import EnergyModel

    run = tmp_path / "run"
    model = Trainer(_tiny_recipe(steps=6), run, progress=False).fit()
    config = json.loads((run / "config.json").read_text())
    assert config["provenance"]["sampler"] == {"name": "langevin", "source": "built-in"}
    assert config["shape"] == [2]
    assert (run / "density.png").stat().st_size > 1000
    reloaded = EnergyModel.from_run(run)
    x = torch.randn(5, 2)
    assert torch.equal(reloaded.data_energy(x), model.data_energy(x))


def test_training_on_the_users_own_points(tmp_path):
    import numpy as np

    from ebmkit.data import DATASETS

    points = DATASETS.build("moons").sample(500, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "mine.npy", points)
    recipe = _tiny_recipe(steps=4).override({"data": {"name": "file", "path": str(tmp_path / "mine.npy")}})
    model = Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["recipe"]["data"]["path"].endswith("mine.npy")
    assert torch.isfinite(model.generate(10)).all()


def test_periodic_evaluation_keeps_the_best_weights(tmp_path):
    from ebmkit.training.checkpoint import load_tensors

    run = tmp_path / "run"
    recipe = _tiny_recipe(steps=12, eval_every=4, log_every=4, eval_samples=64, keep_best=True)
    Trainer(recipe, run, progress=False).fit()
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    sws = {r["step"]: r["sw"] for r in rows if "sw" in r}
    assert sorted(sws) == [4, 8, 12] and all(v > 0 for v in sws.values())
    best_step = min(sws, key=sws.get)
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["best"] == {"sw": sws[best_step], "step": best_step}
    exported, best = load_tensors(run / "model.safetensors"), load_tensors(run / "best.safetensors")
    assert all(torch.equal(exported[k], best[k]) for k in best)
    # selection draws are not `ebmkit eval`'s draws: the same weights score differently there
    from ebmkit.data import DATASETS
    from ebmkit.metrics import sliced_wasserstein
    from ebmkit.model import EnergyModel

    model, ev = EnergyModel.from_run(run), recipe.eval
    samples = model.generate(64, generator=torch.Generator().manual_seed(ev.seed))
    data = DATASETS.build(recipe.data).sample(64, generator=torch.Generator().manual_seed(ev.seed + 1))
    on_eval_seeds = sliced_wasserstein(samples, data, n_projections=ev.n_projections,
                                       generator=torch.Generator().manual_seed(ev.seed + 2))
    assert float(on_eval_seeds) != pytest.approx(state["best"]["sw"], rel=1e-3)


def test_evaluation_runs_on_its_own_schedule_not_only_on_log_steps(tmp_path):
    Trainer(_tiny_recipe(steps=9, eval_every=3, log_every=4, eval_samples=32), tmp_path / "run", progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 4, 6, 8, 9]
    assert [r["step"] for r in rows if "sw" in r] == [3, 6, 9]


def test_ema_warmup_follows_the_formula():
    from ebmkit.training.trainer import ema_multi_avg_fn

    ema, p = [torch.zeros(3)], [torch.ones(3)]
    update = ema_multi_avg_fn(0.99, warmup=True)
    expected = 0.0
    for n in range(1, 60):
        update(ema, p, torch.tensor(n))
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * 1.0
        assert torch.allclose(ema[0], torch.full((3,), expected))
    plain = [torch.zeros(1)]
    ema_multi_avg_fn(0.9, warmup=False)(plain, [torch.ones(1)], torch.tensor(1))
    assert torch.allclose(plain[0], torch.tensor([0.1]))


def test_lr_schedule():
    from ebmkit.training.trainer import lr_factor

    assert lr_factor(0, 10, 100, "constant") == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, "constant") == 1.0 and lr_factor(50, 10, 100, "constant") == 1.0
    assert lr_factor(10, 10, 100, "cosine") == 1.0
    assert lr_factor(55, 10, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, "cosine") == pytest.approx(0.0)


def test_overwrite_with_a_bad_recipe_loses_nothing(tmp_path):
    from ebmkit.data import DataError

    run = tmp_path / "run"
    Trainer(_tiny_recipe(steps=4), run, progress=False).fit()
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    bad = _tiny_recipe(steps=4).override({"data": {"name": "file", "path": str(tmp_path / "absent.npy")}})
    with pytest.raises(DataError, match="not found"):
        Trainer(bad, run, overwrite=True, progress=False).fit()
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before
