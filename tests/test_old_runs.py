"""Runs written before a change still work after it: tests/fixtures/old_runs holds one small run per 2D
algorithm (langevin, cooperative, adversarial and dp_policy samplers), made on 2026-12-07 before the
training step became a plan (tests/fixtures/old_runs/make.py says how), and kept as written. Each
loads, generates what it generated when it was made, samples and evaluates from the command
line, and resumes from its checkpoint."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmkit import EnergyModel

FIXTURES = Path(__file__).parent / "fixtures" / "old_runs"
NAMES = ["drl", "cdrl", "ddaebm", "dxmi"]
GENERATED = json.loads((FIXTURES / "generated.json").read_text())


def run(*args):
    return subprocess.run([sys.executable, "-m", "ebmkit", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("name", NAMES)
def test_an_old_run_generates_what_it_generated_when_it_was_made(name):
    model = EnergyModel.from_run(FIXTURES / name)
    x = model.generate(8, generator=torch.Generator().manual_seed(0))
    # a float tolerance, not bits: the fixture was made on another CPU than the one checking it
    torch.testing.assert_close(x, torch.tensor(GENERATED[name]), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_an_old_run_samples_evaluates_and_resumes_from_the_command_line(name, tmp_path):
    copy = tmp_path / name  # never written into: the fixture stays as it was made
    shutil.copytree(FIXTURES / name, copy)
    sampled = run("sample", copy, "--seeds", "0-3", "-o", tmp_path / "x.npy")
    assert sampled.returncode == 0, sampled.stderr
    assert np.load(tmp_path / "x.npy").shape == (4, 2)
    evaluated = run("eval", copy, "-n", "200", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert {"sw", "energy_auc"} <= set(json.loads(evaluated.stdout))
    resumed = run("train", "--resume", copy, "--steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    said = " ".join(resumed.stderr.split())  # the console's lines, unwrapped
    assert f"resuming {copy} at step 4" in said and "done 6 steps" in said
    steps = [json.loads(line)["step"] for line in (copy / "stats.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
