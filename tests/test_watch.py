"""The divergence watch: finite blow-ups (runaway negatives, exploding gradients, garbage samples)
stop a run, or roll it back, like a non-finite loss; `bench toy` shows such a cell as diverged."""

import json

import pytest
import torch

from ebmkit import Recipe
from ebmkit.recipes.base import TrainConfig
from ebmkit.training import DivergenceError, Trainer
from ebmkit.training.checkpoint import load_checkpoint
from ebmkit.training.distributed import Distributed
from ebmkit.training.watch import WARMUP, Watch
from helpers import assert_one_line_error
from test_cli import run

TINY = {"network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 40,
        "train.checkpoint_every": 10, "train.log_every": 5, "train.threads": 1}
# DRL with its step cap off and b² = 1: s_0 ≈ 3.2 on modes of std 0.35, so the chains run away at once
HUGE_STEP = {"energy.b_square": 1.0, "energy.local_scale": None}
ONE_RANK = Distributed.from_env("cpu")


def watch(**options) -> Watch:
    return Watch(TrainConfig(**options), torch.device("cpu"))


def test_negatives_far_beyond_the_positives_are_flagged_at_their_first_step():
    w = watch()
    positives = torch.randn(64, 2)
    w.negatives("sampler 'langevin'", positives * 1.1, positives, 1)
    assert w.check(ONE_RANK) is None
    w.negatives("sampler 'langevin'", positives * 1.5, positives, 2)
    w.negatives("sampler 'langevin'", positives * 500, positives, 3)  # ratio 500 > 100
    w.negatives("sampler 'langevin'", positives * 1e9, positives, 4)
    problem = w.check(ONE_RANK)
    assert problem.step == 3
    assert problem.message == ("sampler 'langevin' blew up at step 3: its negatives' largest norm is 500× the "
                               "positives' (train.max_negative_ratio 100)")
    assert w.check(ONE_RANK) is None  # reported once


def test_nan_negatives_and_losses_are_flagged_and_null_turns_a_check_off():
    w = watch()
    x = torch.randn(8, 2)
    w.negatives("sampler 'x'", torch.full_like(x, float("nan")), x, 7)
    w.loss("energy loss (y)", torch.tensor(float("inf")), 9)
    assert w.check(ONE_RANK).step == 7
    off = watch(max_negative_ratio=None)
    off.negatives("sampler 'x'", x * 1e9, x, 1)
    assert off.check(ONE_RANK) is None


def test_a_gradient_norm_grown_by_orders_of_magnitude_over_its_history_is_flagged():
    w = watch(max_grad_growth=1e3, grad_growth_window=50)
    generator = torch.Generator().manual_seed(0)
    norms = (0.5 + torch.rand(WARMUP + 40, generator=generator)).tolist()  # median ≈ 1
    norms[WARMUP + 20] = 900.0  # under the bar
    norms[WARMUP + 30] = 5e3  # over it
    found = []
    for step, norm in enumerate(norms, start=1):
        w.grad_norm("energy loss (z)", torch.tensor(norm), step)
        if step % 25 == 0 or step == len(norms):
            found += [problem] if (problem := w.check(ONE_RANK)) else []
    (problem,) = found
    assert problem.step == WARMUP + 31
    assert problem.message.startswith(f"the gradient norm of the energy loss (z) grew to 5e+03 at step {WARMUP + 31}")
    assert "train.max_grad_growth 1000" in problem.message


def test_the_first_steps_and_skipped_fp16_steps_set_no_alarm():
    w = watch(max_grad_growth=10.0)
    for step in range(1, WARMUP):  # huge early norms: no history to compare with yet
        w.grad_norm("u", torch.tensor(10.0 ** (step % 5)), step)
    w.grad_norm("u", torch.tensor(float("inf")), WARMUP)  # an overflow the loss scaler skips
    assert w.check(ONE_RANK) is None


def test_a_chain_that_blows_up_stops_the_run_with_one_line_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = [f"{k}={json.dumps(v)}" for k, v in {**TINY, **HUGE_STEP}.items()]
    r = run("train", "--no-progress", "--out", str(out), *(a for arg in args for a in ("--set", arg)))
    assert "done" not in r.stderr
    assert_one_line_error_after_data_line(r, "sampler 'langevin' blew up at step 1:", "× the positives'",
                                          "train.max_negative_ratio 100", "checkpoint (step 0)")
    _, state = load_checkpoint(out / "checkpoint")
    assert state["step"] == 0 and not (out / "model.safetensors").exists()


def assert_one_line_error_after_data_line(result, *needles):
    """A training run refused after it said what it did to the data: that line, then the error."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("data: "), result.stderr
    result.stderr = "\n".join(lines[1:])
    assert_one_line_error(result, "error:", *needles)


def test_rollback_on_a_blow_up_records_it_and_gives_up_after_max_rollbacks(tmp_path):
    recipe = Recipe.from_name("drl").override({**TINY, **HUGE_STEP, "train.on_divergence": "rollback",
                                               "train.max_rollbacks": 2})
    with pytest.raises(DivergenceError, match=r"blew up at step 1: .* \(after 2 rollbacks\); the last good "
                                              r"checkpoint \(step 0\)") as caught:
        Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert caught.value.step == 1
    records = [json.loads(line) for line in (tmp_path / "run" / "rollbacks.jsonl").read_text().splitlines()]
    assert [(r["diverged_at"], r["restarted_from"]) for r in records] == [(1, 0), (1, 0)]
    assert all(r["problem"].startswith("sampler 'langevin' blew up at step 1") for r in records)


def test_garbage_samples_never_end_done(tmp_path, monkeypatch):
    """Training that stays in range but whose generation blows up is stopped at the export."""
    from ebmkit.samplers.langevin import LangevinSampler

    original = LangevinSampler.generate
    monkeypatch.setattr(LangevinSampler, "generate", lambda self, n, energy, generator=None, **kw:
                        original(self, n, energy, generator, **kw) * 1e6)
    recipe = Recipe.from_name("drl").override({**TINY, "train.steps": 5})
    with pytest.raises(DivergenceError, match=r"the sampler's final samples blew up at step 5: their largest norm is "
                                              r".* against the data's"):
        Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_normal_training_sets_no_alarm(tmp_path):
    """The preset's first 300 steps (its steepest gradient changes) with every check on."""
    recipe = Recipe.from_name("drl").override({"train.steps": 300, "train.threads": 1, "train.log_every": 10})
    Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_bench_toy_shows_a_diverged_cell_as_diverged(tmp_path):
    out = tmp_path / "bench"
    sets = {**{k: v for k, v in TINY.items() if k != "train.threads"}, **HUGE_STEP, "eval.n_samples": 300}
    r = run("bench", "toy", "--recipes", "drl", "--data", "8gaussians", "--seeds", "1", "--out", str(out),
            *(a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")))
    assert r.returncode == 0, r.stderr
    assert "drl · 8gaussians · seed 0: diverged at step 1" in r.stderr
    table = (out / "toy.md").read_text()
    assert "| drl | 8gaussians | diverged (1/1 seeds) |" in table
    assert "| *data vs data* | 8gaussians |" in table
    (row,) = json.loads((out / "toy.json").read_text())["runs"]
    assert row["diverged_at"] == 1 and "sw" not in row
