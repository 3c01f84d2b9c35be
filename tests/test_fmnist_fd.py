"""FD-FMNIST: the packaged classifier loads and classifies the real Fashion-MNIST test split, its
Fréchet distance is small for real images and large for noise, and it is the Fréchet formula of
its features (pinned to an independent eigenvalue computation)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ebmkit import Recipe
from ebmkit.metrics.fmnist import (FEATURE_DIM, WEIGHTS, FDFMNIST, accuracy, classifier_features, fashion_mnist,
                                   load_classifier, read_labels)
from ebmkit.metrics.frechet import MetricError
from ebmkit.model import EnergyModel
from ebmkit.training import Trainer
from helpers import needs_fashion_mnist

MEASURED_ACCURACY = 0.9192  # `python -m ebmkit.metrics.fmnist train` (5 epochs, seed 0)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return FDFMNIST(cache_dir=tmp_path_factory.mktemp("fd_cache"))


@pytest.fixture(scope="module")
def train_images():
    return fashion_mnist("train").images[:2000]


def frechet_by_eigenvalues(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr Σa + tr Σb − 2 Σ √λ(Σa^½ Σb Σa^½): the trace of (Σa Σb)^½ from the
    eigenvalues of a symmetric matrix similar to it, not from scipy's sqrtm."""
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root_a @ sb @ root_a)
    return float(((ma - mb) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def test_shipped_weights_are_small_and_load():
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 1_000_000
    with safe_open(str(WEIGHTS), "pt") as f:
        assert float(f.metadata()["test_accuracy"]) == pytest.approx(MEASURED_ACCURACY, abs=1e-4)
    net = load_classifier()
    assert not net.training
    assert net.features(torch.zeros(3, 1, 28, 28)).shape == (3, FEATURE_DIM)


@needs_fashion_mnist
def test_labels_are_the_balanced_ten_classes():
    train, test = read_labels(None, "train"), read_labels(None, "test")
    assert np.bincount(train).tolist() == [6000] * 10 and np.bincount(test).tolist() == [1000] * 10


@needs_fashion_mnist
def test_classifier_accuracy_on_the_test_split():
    test = fashion_mnist("test")
    acc = accuracy(load_classifier(), test.images, read_labels(None, "test"))
    assert acc == pytest.approx(MEASURED_ACCURACY, abs=2e-3)  # what training measured, on any machine
    assert acc >= 0.9


@needs_fashion_mnist
def test_fd_small_for_real_images_large_for_noise(scorer, train_images):
    real = scorer(train_images)
    noise = scorer(torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert 0 < real < 5
    assert noise > 100 * real


@needs_fashion_mnist
def test_fd_is_the_frechet_formula_of_the_features(scorer, train_images):
    net = scorer.net
    ours = classifier_features(train_images, net)
    ref = classifier_features(fashion_mnist("test").images, net)
    assert ours.shape == (2000, FEATURE_DIM) and ours.dtype == np.float64
    assert scorer(train_images) == pytest.approx(frechet_by_eigenvalues(ours, ref), rel=1e-6)
    # floats in [−1, 1] are scored as their PNG pixels
    as_float = train_images.float() / 127.5 - 1
    np.testing.assert_array_equal(classifier_features(as_float, net), ours)


@needs_fashion_mnist
def test_reference_statistics_are_cached(scorer):
    scorer.reference_stats()
    (path,) = scorer.cache_dir.glob("fashion_mnist-*.npz")
    key = json.loads(str(np.load(path)["key"]))
    assert key["n"] == 10_000 and key["data"]["split"] == "test" and len(key["weights_sha256"]) == 64
    before = path.stat().st_mtime_ns
    stats = scorer.reference_stats()
    assert path.stat().st_mtime_ns == before and stats.mu.shape == (FEATURE_DIM,)


@needs_fashion_mnist
def test_wrong_images_get_a_clear_error(scorer, tmp_path):
    with pytest.raises(MetricError, match=r"28×28 grey images \(n, 1, 28, 28\), got \(2, 3, 32, 32\)"):
        scorer(torch.zeros(2, 3, 32, 32))
    with pytest.raises(MetricError, match="nope.safetensors' not found"):
        load_classifier(tmp_path / "nope.safetensors")


@needs_fashion_mnist
def test_eval_fd_fmnist(tmp_path, train_images):
    run_dir = tmp_path / "run"
    recipe = Recipe.from_name("drl").override({
        "data": {"name": "fashion_mnist", "limit": 64}, "sampler.n_steps": 2, "train.batch_size": 8, "train.steps": 2,
        "network": {"name": "resnet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                    "embedding_dim": 16, "temb_dim": 16},
    })
    Trainer(recipe, run_dir, progress=False).fit()
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "EBMKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "ebmkit", "eval", str(run_dir), "-n", "20", "--fd-fmnist", "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    samples = EnergyModel.from_run(run_dir).generate(20, generator=torch.Generator().manual_seed(recipe.eval.seed))
    expected = FDFMNIST(cache_dir=tmp_path / "cache" / "fd_fmnist")(samples)
    assert metrics["fd_fmnist"] == pytest.approx(expected, rel=1e-6)
    assert json.loads((run_dir / "eval.json").read_text())["fd_fmnist"] == metrics["fd_fmnist"]


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@needs_fashion_mnist
def test_training_command_is_seeded(tmp_path):
    """The documented command, on a 300-image copy of the data for one epoch: it writes weights
    that load, and the same seed writes the same tensors (the header's metadata order may vary)."""
    root = tmp_path / "fmnist"
    root.mkdir()
    for split, stem in (("train", "train"), ("test", "t10k")):
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", fashion_mnist(split).images[:300, 0].numpy())
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", read_labels(None, split)[:300])
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.safetensors"
        r = subprocess.run([sys.executable, "-m", "ebmkit.metrics.fmnist", "train", "--out", str(out), "--root",
                            str(root), "--epochs", "1"], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        assert "test accuracy" in r.stdout
        outs.append(out)
    a, b = load_file(outs[0]), load_file(outs[1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with safe_open(str(outs[0]), "pt") as f:
        assert f.metadata()["epochs"] == "1" and f.metadata()["seed"] == "0"
    load_classifier(outs[0])
