"""Data-parallel training (torchrun, gloo on CPU) computes what one process with the global batch does."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ebmkit import Recipe
from ebmkit.model import EnergyModel
from ebmkit.training.checkpoint import load_checkpoint
from helpers import assert_one_line_error, assert_same_learned_energy

TINY = {
    "drl": ["network.width=32", "network.depth=1", "sampler.n_steps=3"],
    "cdrl": ["network.width=32", "network.depth=1", "sampler.refine.n_steps=2", "sampler.initializer.width=32",
             "sampler.initializer.depth=1"],
}


def train(out, recipe, *extra):
    sets = [a for s in TINY[recipe] + ["train.batch_size=64", "train.threads=1", "train.log_every=2",
                                        "train.checkpoint_every=3", "train.lr=1e-3", "train.warmup=0"] for a in ("--set", s)]
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "ebmkit", "train", "--recipe", recipe, "--steps", "6", "--out", str(out),
                        "--no-progress", *sets, *extra], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.parametrize("recipe", ["drl", "cdrl"])
def test_two_gloo_processes_equal_one_with_the_global_batch(tmp_path, recipe):
    train(tmp_path / "one", recipe)
    r = train(tmp_path / "two", recipe, "--nproc", "2")
    one_state = load_checkpoint(tmp_path / "one" / "checkpoint")[1]
    assert one_state["step"] == load_checkpoint(tmp_path / "two" / "checkpoint")[1]["step"] == 6
    # the learned energies agree (helpers.assert_same_learned_energy says why not the parameters)
    recipe = Recipe.load(tmp_path / "one" / "config.json")
    torch.manual_seed(0)  # the trainer's initialisation
    init = EnergyModel(recipe, (2,)).eval()
    for weights in ("checkpoint/model.safetensors", "checkpoint/ema.safetensors"):
        one, two = (EnergyModel.from_run(tmp_path / run, weights) for run in ("one", "two"))
        assert_same_learned_energy(one, two, init)
        # and so do their samples (CDRL's learnable initializer included)
        s_one, s_two, s_init = (m.generate(seeds=range(100)) for m in (one, two, init))
        assert (s_two - s_one).abs().max() <= 1e-3 * (s_one - s_init).abs().max()
    # logged losses are the global batch's (averaged over ranks) and only rank 0 wrote the log
    rows = lambda d: [json.loads(line) for line in (d / "stats.jsonl").read_text().splitlines()]
    a, b = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [x["step"] for x in a] == [x["step"] for x in b] == [2, 4, 6]
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4, abs=1e-5)
    assert r.stderr.count("done 6 steps") == 1


def test_global_batch_must_divide_among_processes(tmp_path):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1"}
    r = subprocess.run([sys.executable, "-m", "ebmkit", "train", "--steps", "2", "--set", "train.batch_size=33",
                        "--out", str(tmp_path / "r"), "--nproc", "2", "--no-progress"], capture_output=True, text=True,
                       env=env, timeout=600)
    assert_one_line_error(r, "train.batch_size 33 is the global batch; it must be divisible by the 2 processes (--nproc)")
    assert not (tmp_path / "r").exists()
