"""Batch-aware generators: per-sample seeds and data-parallel shards draw what one plain stream would."""

import pytest
import torch

import ebmkit.random as rnd
from ebmkit import Recipe
from ebmkit.model import EnergyModel


def test_per_sample_generator_row_i_is_seed_i_alone():
    g = rnd.PerSampleGenerator([3, 11, 5])
    x = rnd.randn((3, 4, 2), generator=g)
    k = rnd.randint(0, 100, (3, 6), generator=g)
    for row, seed in enumerate([3, 11, 5]):
        own = torch.Generator().manual_seed(seed)
        assert torch.equal(x[row], torch.randn((4, 2), generator=own))
        assert torch.equal(k[row], torch.randint(0, 100, (6,), generator=own))
    with pytest.raises(ValueError, match="3 samples"):
        rnd.randn((4, 2), generator=g)


def test_shards_together_draw_the_global_batch():
    whole = torch.Generator().manual_seed(7)
    expected = (torch.randn((6, 3), generator=whole), torch.randint(0, 9, (6,), generator=whole))
    parts = []
    for rank in range(3):
        g = rnd.ShardedGenerator(torch.Generator().manual_seed(7), rank, world_size=3)
        parts.append((rnd.randn((2, 3), generator=g), rnd.randint(0, 9, (2,), generator=g)))
    assert torch.equal(torch.cat([p[0] for p in parts]), expected[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), expected[1])


def test_plain_generator_falls_through_to_torch():
    a = rnd.randn((5, 2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, torch.randn((5, 2), generator=torch.Generator().manual_seed(1)))


@pytest.fixture
def one_thread():
    """Bitwise claims hold per thread count: with several threads MKL may split a product
    differently from one call to the next (it adapts to the machine's load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["drl", "cdrl", "dxmi"])
def test_seeded_samples_do_not_depend_on_the_batch(name, one_thread):
    torch.manual_seed(0)
    recipe = Recipe.from_name(name).override({"network.width": 32} if name != "dxmi" else {})
    model = EnergyModel(recipe, (2,)).eval()
    a = model.generate(seeds=range(30), batch_size=7)
    b = model.generate(seeds=range(30), batch_size=30)
    c = model.generate(seeds=range(10, 20), batch_size=4)
    # The same draws, and short last chunks are padded so BLAS keeps its kernel; whether a
    # 7-row and a 30-row product round alike is the BLAS build's choice (MKL on an AVX-512 CPU:
    # dxmi's chain differs by ~3e-5 relative), so equality is asked to float32 rounding.
    torch.testing.assert_close(a, b, rtol=2e-4, atol=1e-5)
    torch.testing.assert_close(a[10:20], c, rtol=2e-4, atol=1e-5)
    assert not torch.allclose(a[:10], a[10:20])  # distinct seeds, distinct samples


def test_image_samples_are_bitwise_batch_independent(one_thread):
    torch.manual_seed(0)
    recipe = Recipe.from_name("dxmi_fmnist").override({"sampler.network.channels": 8})
    model = EnergyModel(recipe, (1, 28, 28)).eval()
    assert torch.equal(model.generate(seeds=range(6), batch_size=4), model.generate(seeds=range(6), batch_size=6))


def test_batch_norm_on_batch_statistics_is_reported():
    coupled = EnergyModel(Recipe.from_name("ddaebm"), (2,)).eval().batch_coupled()
    assert coupled[:3] == ["sampler.G.x_net.1", "sampler.G.decoder.1", "sampler.G.decoder.4"]
    assert EnergyModel(Recipe.from_name("drl"), (2,)).eval().batch_coupled() == []


def test_cli_sample_seeds_with_batch_7_and_100(tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np

    from ebmkit.training import Trainer
    from helpers import assert_one_line_error

    run_dir = tmp_path / "run"
    recipe = Recipe.from_name("drl").override({"network.width": 16, "sampler.n_steps": 3, "train.batch_size": 32,
                                               "train.steps": 3})
    Trainer(recipe, run_dir, progress=False).fit()

    def sample(*args):
        env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, "-m", "ebmkit", "sample", str(run_dir), *args], capture_output=True,
                              text=True, env=env, timeout=300)

    for batch in (7, 100):
        r = sample("--seeds", "0-99", "--batch", str(batch), "-o", str(tmp_path / f"b{batch}.npy"))
        assert r.returncode == 0, r.stderr
    r = sample("--seeds", "40-49", "-o", str(tmp_path / "part.npy"))
    assert r.returncode == 0, r.stderr
    a, b, part = (np.load(tmp_path / f) for f in ("b7.npy", "b100.npy", "part.npy"))
    assert a.shape == (100, 2)
    assert np.array_equal(a, b)
    assert np.array_equal(a[40:50], part)
    assert_one_line_error(sample("--seeds", "5-2"), "--seeds", "0-999")
    assert_one_line_error(sample("--seeds", "0-9", "-n", "5"), "-n 5", "10 seeds")
