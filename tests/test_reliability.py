"""Diverging runs (a non-finite loss) and mixed precision."""

import json

import pytest
import torch

from ebmkit import Recipe
from ebmkit.divergences.recovery_likelihood import RecoveryLikelihood
from ebmkit.model import EnergyModel
from ebmkit.training import Trainer, TrainingError
from ebmkit.training.checkpoint import load_checkpoint

TINY = {"network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 10,
        "train.checkpoint_every": 4, "train.log_every": 100, "train.threads": 1}


def poison(monkeypatch, steps):
    """The energy loss becomes NaN on the given (1-based) training calls."""
    original, calls = RecoveryLikelihood.energy_loss, [0]

    def energy_loss(self, batch, negatives, energy):
        out = original(self, batch, negatives, energy)
        calls[0] += 1
        if calls[0] in steps:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(RecoveryLikelihood, "energy_loss", energy_loss)
    return calls


def test_nan_stops_the_run_naming_step_and_loss_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    poison(monkeypatch, {6})
    with pytest.raises(TrainingError, match=r"energy loss \(recovery_likelihood\) became non-finite at step 6; "
                                            r"the last good checkpoint \(step 4\) is kept"):
        Trainer(Recipe.from_name("drl").override(TINY), tmp_path / "run", progress=False).fit()
    files, state = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert state["step"] == 4  # checked before the step-8 save: the NaN weights were never written
    assert all(torch.isfinite(v).all() for v in files["model"].values())


def test_rollback_restarts_from_the_last_good_checkpoint_with_a_new_seed(tmp_path, monkeypatch):
    poison(monkeypatch, {6})
    recipe = Recipe.from_name("drl").override({**TINY, "train.on_divergence": "rollback"})
    model = Trainer(recipe, tmp_path / "run", progress=False).fit()
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "rollbacks.jsonl").read_text().splitlines()]
    assert record == {"diverged_at": 6, "problem": "energy loss (recovery_likelihood) became non-finite at step 6",
                      "restarted_from": 4, "seed": 1 + 1_000_003}
    files, state = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert state["step"] == 10 and state["rollbacks"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_rollbacks_are_bounded(tmp_path, monkeypatch):
    poison(monkeypatch, set(range(6, 100)))  # calls 6, 7, …: steps 6, then 5 (the 7th call) after going back to 4
    recipe = Recipe.from_name("drl").override({**TINY, "train.on_divergence": "rollback", "train.max_rollbacks": 2})
    with pytest.raises(TrainingError, match=r"became non-finite at step 5 \(after 2 rollbacks\)"):
        Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert len((tmp_path / "run" / "rollbacks.jsonl").read_text().splitlines()) == 2


def test_nan_in_the_sampler_loss_is_named(tmp_path, monkeypatch):
    from ebmkit.samplers.cooperative import CooperativeSampler as Cooperative

    original = Cooperative.loss

    def loss(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(Cooperative, "loss", loss)
    recipe = Recipe.from_name("cdrl").override({"network.width": 16, "sampler.refine.n_steps": 2, "train.steps": 3,
                                                "train.batch_size": 16})
    with pytest.raises(TrainingError, match=r"sampler loss \(recovery_likelihood on cooperative\) became non-finite "
                                            r"at step 1"):
        Trainer(recipe, tmp_path / "run", progress=False).fit()


# -- mixed precision ------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(tmp_path, precision):
    runs = {}
    for p in ("fp32", precision):
        recipe = Recipe.from_name("drl").override({**TINY, "train.steps": 4, "train.log_every": 1, "train.precision": p})
        trainer = Trainer(recipe, tmp_path / p, progress=False)
        trainer.fit()
        runs[p] = trainer
    first = [t.history[0] for t in runs.values()]
    # the same data and noise: the first loss differs by the autocast dtype's rounding only
    assert first[1]["loss"] == pytest.approx(first[0]["loss"], rel=0.05, abs=0.05)
    assert first[1]["loss"] != first[0]["loss"]
    assert all(torch.isfinite(p).all() for p in runs[precision].model.parameters())
    scalers = load_checkpoint(tmp_path / precision / "checkpoint")[1]["scalers"]
    assert (scalers["energy"]["scale"] > 0) if precision == "fp16" else scalers == {}


def test_fp16_resume_is_exact(tmp_path):
    recipe = Recipe.from_name("drl").override({**TINY, "train.steps": 8, "train.precision": "fp16"})
    straight = Trainer(recipe, tmp_path / "straight", progress=False)
    straight.fit()
    Trainer(recipe.override({"train.steps": 4}), tmp_path / "resumed", progress=False).fit()
    resumed = Trainer(recipe, tmp_path / "resumed", resume=True, progress=False)
    resumed.fit()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.scalers["energy"].state_dict() == straight.scalers["energy"].state_dict()


def test_langevin_under_autocast_keeps_the_chain_in_fp32():
    torch.manual_seed(0)
    model = EnergyModel(Recipe.from_name("drl").override({"network.width": 32}), (2,))
    batch = model.divergence.training_batch(torch.randn(64, 2), generator=torch.Generator().manual_seed(0))
    chains = {}
    for dtype in (torch.float32, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            chains[dtype] = model.sampler.sample(batch, model.energy, generator=torch.Generator().manual_seed(1)).negatives
    assert chains[torch.bfloat16].dtype == torch.float32
    step = (chains[torch.float32] - batch.positives).abs().max()  # how far the chain is from the positives
    assert 0 < (chains[torch.bfloat16] - chains[torch.float32]).abs().max() < 0.05 * step


def test_weights_of_another_model_are_named_not_a_traceback(tmp_path):
    from ebmkit.training import CheckpointError
    from ebmkit.training.checkpoint import save_tensors

    Trainer(Recipe.from_name("drl").override({**TINY, "train.steps": 2}), tmp_path / "run", progress=False).fit()
    other = EnergyModel(Recipe.from_name("drl").override({"network.width": 24, "network.depth": 1}), (2,))
    save_tensors(other.state_dict(), tmp_path / "run" / "other.safetensors")
    with pytest.raises(CheckpointError, match=r"weights '.*other.safetensors' do not fit the model of .*config.json: "
                                              r"size mismatch"):
        EnergyModel.from_run(tmp_path / "run", "other.safetensors")
    # the trainer's EMA file (an AveragedModel's state) loads as the model it averages
    ema = EnergyModel.from_run(tmp_path / "run", "checkpoint/ema.safetensors")
    final = EnergyModel.from_run(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(ema.state_dict().values(), final.state_dict().values()))
