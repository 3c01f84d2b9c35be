"""Contract tests for component authors: a component that passes them works in any recipe.

Subclass one contract in your package's tests and name your component's spec; pytest runs the
inherited tests (pytest is needed, nothing else):

    from ebmkit.testing import SamplerContract

    class TestAnnealedLangevin(SamplerContract):
        spec = {"name": "annealed_langevin", "n_steps": 3}

Each contract puts the component into a small preset (``base_recipe``, made tiny by
``small``) in place of that preset's own and checks what the trainer relies on: shapes,
finite values, reproducibility from a seeded ``torch.Generator`` (exact resume depends on it),
gradients where they belong, and that two training steps run and the saved weights load back
into an identical model. The same contracts run on every built-in component in ebmkit's tests.
"""

from __future__ import annotations

import copy
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from ebmkit.data import DATASETS
from ebmkit.data.cifar import NUMPY_RECONSTRUCT
from ebmkit.model import EnergyModel
from ebmkit.recipes import Recipe
from ebmkit.types import SampleRecord

BATCH = 16


def _num_levels(model) -> int:
    """The model's levels: the schedule's, or the one level 0 of a recipe without a schedule."""
    return 1 if model.schedule is None else model.schedule.num_levels


class ComponentContract:
    """What every contract shares. Set ``spec``; change ``base_recipe`` if your component needs
    partners the default preset lacks (a learnable sampler's divergence, say)."""

    field: ClassVar[str]  # the recipe field the component fills
    spec: ClassVar[Any]
    base_recipe: ClassVar[str] = "drl"
    # two steps of an untrained component draw samples far from any data, which the divergence
    # watch would rightly stop (train.max_negative_ratio): these tests check the plumbing only
    small: ClassVar[dict] = {"network.width": 16, "network.depth": 1, "sampler.n_steps": 2,
                             "train.batch_size": BATCH, "train.steps": 2, "train.max_negative_ratio": None}

    @pytest.fixture
    def recipe(self) -> Recipe:
        base = Recipe.from_name(self.base_recipe)
        changes = {self.field: self.spec}
        current = base.model_dump(mode="json")
        for key, value in self.small.items():  # shrink the partners (where they have the option), never the component under test
            head, _, rest = key.partition(".")
            if head != self.field and head in current and rest.split(".")[0] in current[head]:
                changes[key] = value
        return base.override(changes)

    @pytest.fixture
    def model(self, recipe) -> EnergyModel:
        torch.manual_seed(0)
        return EnergyModel(recipe, DATASETS.build(recipe.data).shape)

    @pytest.fixture
    def data(self, recipe) -> torch.Tensor:
        return DATASETS.build(recipe.data).sample(BATCH, generator=torch.Generator().manual_seed(0))

    def batch(self, model, data, seed=0):
        return model.divergence.training_batch(data, generator=torch.Generator().manual_seed(seed))

    def test_trains_and_reloads_identically(self, recipe, tmp_path):
        from ebmkit.training import Trainer

        trained = Trainer(recipe, tmp_path / "run", progress=False).fit()
        reloaded = EnergyModel.from_run(tmp_path / "run")
        a = trained.generate(8, generator=torch.Generator().manual_seed(1))
        b = reloaded.generate(8, generator=torch.Generator().manual_seed(1))
        assert torch.isfinite(a).all()
        assert torch.equal(a, b), "the saved weights do not rebuild the same model (state outside state_dict?)"


class SamplerContract(ComponentContract):
    """`sample(batch, energy, generator)` and `generate(n, energy, generator)`."""

    field = "sampler"

    def test_negatives_are_shaped_like_positives_and_finite(self, model, data):
        batch = self.batch(model, data)
        record = model.sampler.sample(batch, model.energy, generator=torch.Generator().manual_seed(1))
        assert isinstance(record, SampleRecord), "sample() returns a SampleRecord: the negatives and what is saved"
        negatives = record.negatives
        assert negatives.shape == batch.positives.shape
        assert torch.isfinite(negatives).all()

    def test_same_seed_same_negatives(self, model, data):
        batch = self.batch(model, data)
        # from the same declared state too: a sampler that keeps some (a replay buffer) changes it as it samples
        twin = copy.deepcopy(model.sampler)
        a = model.sampler.sample(batch, model.energy, generator=torch.Generator().manual_seed(1)).negatives
        b = twin.sample(batch, model.energy, generator=torch.Generator().manual_seed(1)).negatives
        assert torch.equal(a, b), "sampling must draw all its randomness from the generator it is given"

    def test_sampling_leaves_no_gradient_on_the_energy(self, model, data):
        negatives = model.sampler.sample(self.batch(model, data), model.energy,
                                         generator=torch.Generator().manual_seed(1)).negatives
        assert all(p.grad is None for p in model.energy.parameters())
        assert not negatives.requires_grad or model.sampler.learnable

    def test_generate_shape_finite_reproducible(self, model):
        a = model.generate(8, generator=torch.Generator().manual_seed(2))
        b = model.generate(8, generator=torch.Generator().manual_seed(2))
        assert a.shape == (8, *model.shape)
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)


class EnergyContract(ComponentContract):
    """E(x, t): one finite scalar per sample, differentiable in x, each sample on its own."""

    field = "energy"

    def test_one_finite_energy_per_sample(self, model, data):
        t = torch.arange(BATCH) % _num_levels(model)
        e = model.energy(data, t)
        assert e.shape == (BATCH,)
        assert torch.isfinite(e).all()

    def test_differentiable_in_x(self, model, data):
        x = data.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.energy(x, torch.zeros(BATCH, dtype=torch.long)).sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0

    def test_samples_do_not_interact(self, model, data):
        """Langevin chains run in batches, in training mode; an energy that mixes samples there
        (BatchNorm) makes each chain depend on the others."""
        model.train()
        t = torch.arange(BATCH) % _num_levels(model)
        together = model.energy(data, t)
        alone = torch.cat([model.energy(data[i : i + 1], t[i : i + 1]) for i in range(BATCH)])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


class NetworkContract(EnergyContract):
    """A backbone in the energy's place: the energy checks, run through the default energy."""

    field = "network"


class ScheduleContract(ComponentContract):
    """ᾱ_t: level 0 is (close to) data, level T (close to) N(0, I), and q matches its formulas."""

    field = "schedule"

    def test_ends_are_data_and_noise(self, model):
        abar = model.schedule.alphas_cumprod
        assert abar[0] >= 0.99, f"level 0 keeps signal variance ᾱ_0 = {abar[0]:.4f}; it should be data (≥ 0.99)"
        assert abar[-1] <= 0.05, f"level T keeps ᾱ_T = {abar[-1]:.4f}; it should be close to N(0, I) (≤ 0.05)"

    def test_marginal_moments(self, model):
        """q(x_t | x_0) by Monte Carlo against √ᾱ_t x_0 and σ̄_t."""
        s, n = model.schedule, 200_000
        x0 = torch.full((n, 1), 2.0, dtype=torch.float64)
        for level in sorted(set(torch.linspace(0, s.num_levels, 9).round().long().tolist())):
            t = torch.full((n,), level, dtype=torch.long)
            x = s.q_sample(x0, t, generator=torch.Generator().manual_seed(level))
            assert abs(x.mean().item() - 2 * s.sqrt_alphas_cumprod[level].item()) < 0.02
            assert abs(x.std().item() - s.sigmas_cumprod[level].item()) < 0.02


class DivergenceContract(ComponentContract):
    """`training_batch`, `energy_loss` and `data_energy`."""

    field = "divergence"

    def test_training_batch_shapes_and_levels(self, model, data):
        batch = self.batch(model, data)
        assert batch.positives.shape == data.shape and batch.condition.shape == data.shape
        assert batch.level.dtype == torch.long and batch.level.shape == (BATCH,)
        assert 0 <= int(batch.level.min()) and int(batch.level.max()) < _num_levels(model)

    def test_energy_loss_is_a_finite_scalar_that_trains_the_energy(self, model, data):
        batch = self.batch(model, data)
        negatives = model.sampler.sample(batch, model.energy, generator=torch.Generator().manual_seed(1)).negatives
        out = model.divergence.energy_loss(batch, negatives, model.energy)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        out.loss.backward()
        grads = [p.grad for p in model.energy.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        assert all(torch.isfinite(g).all() for g in grads)

    def test_data_energy_per_sample(self, model, data):
        e = model.data_energy(data)
        assert e.shape == (BATCH,) and torch.isfinite(e).all()


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote CIFAR-10: bytes as py2 strings (SHORT_BINSTRING /
    BINSTRING, where Python 3 would call _codecs.encode) and numpy's array reconstructor under
    the module name the real files carry, so a fake batch names exactly the globals they do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string

    def save_global(self, obj, name=None):
        if obj is NUMPY_RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def write_fake_cifar10(root: str | Path, n_train: int = 50, n_test: int = 10, seed: int = 0) -> Path:
    """Random images in CIFAR-10's python layout, ``root/cifar-10-batches-py``: data_batch_1..5
    (``n_train`` images split between them), test_batch and batches.meta, each a dict with bytes
    keys pickled as the real files are; lets tests and users run the ``cifar10`` data set without
    the download. Returns the batches folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i + 1}", f"training batch {i + 1} of 5", n)
               for i, n in enumerate(np.array_split(np.arange(n_train), 5))]
    batches.append(("test_batch", "testing batch 1 of 1", np.arange(n_test)))
    for name, label, ids in batches:
        content = {b"batch_label": label.encode(), b"labels": rng.integers(0, 10, len(ids)).tolist(),
                   b"data": rng.integers(0, 256, (len(ids), 3072), dtype=np.uint8),
                   b"filenames": [f"fake_{name}_{i:05d}.png".encode() for i in ids]}
        with open(folder / name, "wb") as f:
            _Py2Pickler(f, protocol=2).dump(content)
    meta = {b"num_cases_per_batch": len(batches[0][2]), b"num_vis": 3072,
            b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                  "horse", "ship", "truck")]}
    with open(folder / "batches.meta", "wb") as f:
        _Py2Pickler(f, protocol=2).dump(meta)
    return folder
