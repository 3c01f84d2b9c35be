"""The trainer core: exact resume after SIGKILL, atomic checkpoints, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ebmkit import Recipe
from ebmkit.training import CheckpointError, Trainer, TrainingError
from ebmkit.training.checkpoint import load_checkpoint

TINY = [
    "--set", "network.width=16", "--set", "network.depth=1", "--set", "sampler.n_steps=5",
    "--set", "train.batch_size=64", "--set", "train.checkpoint_every=5", "--set", "train.log_every=5",
    "--set", "train.threads=1",
]


def _cli(*args, **kw):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ebmkit", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    steps = "400"
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    p = _cli("train", "--steps", steps, "--out", str(ref), "--no-progress", *TINY)
    assert p.wait(timeout=600) == 0, p.stderr.read()

    p = _cli("train", "--steps", steps, "--out", str(cut), "--no-progress", *TINY)
    deadline = time.time() + 300
    while _checkpoint_step(cut) < 100 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "training finished before it could be killed; make the run longer"
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = _checkpoint_step(cut)
    assert 100 <= killed_at < int(steps)

    p = _cli("train", "--resume", str(cut), "--no-progress")
    assert p.wait(timeout=600) == 0, p.stderr.read()
    assert f"at step {killed_at}" in p.stderr.read()

    for name in ("model", "ema", "optimizer"):
        a = load_file(str(ref / "checkpoint" / f"{name}.safetensors"))
        b = load_file(str(cut / "checkpoint" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after resume"
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
