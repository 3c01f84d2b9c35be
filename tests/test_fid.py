"""FID through pytorch-fid: `ebmkit eval --fid` prints what `python -m pytorch_fid` prints for the
same pictures, whichever way the reference is given; `ebmkit sample` writes those pictures.

No download: a random-weight copy of pytorch-fid's Inception, built by pytorch-fid's own code,
sits where pytorch-fid looks for its weights ($TORCH_HOME/hub/checkpoints), so its real loading
path runs. Few 28×28 images (upsampled to 299×299 on the CPU) keep this quick; each Fréchet
distance of 2048-d features still takes its sqrtm (seconds), so few are computed.
"""

import json
import os
import subprocess
import sys
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.data.images import to_uint8
from ebmkit.metrics.fid import FID, FID_DIMS, default_weights_path, inception_features, resolve_reference
from ebmkit.metrics.frechet import MetricError, frechet_distance
from ebmkit.model import EnergyModel
from ebmkit.training import Trainer
from helpers import assert_one_line_error, needs_fashion_mnist

N = 16  # images on each side
# 16 images give a rank-15 covariance of 2048-d features: scipy's sqrtm says so, as it should
pytestmark = pytest.mark.filterwarnings("ignore:Matrix is singular")
REF_SPEC = {"name": "fashion_mnist", "split": "test", "limit": N}


def random_inception_state(seed: int = 0) -> dict:
    """pytorch-fid's FID Inception (``fid_inception_v3``: torchvision's Inception3 with its
    patched blocks) with random weights: its own constructors run, only the download is
    replaced by the fresh network's state. BatchNorm statistics from one batch of random
    pictures keep every layer's activations of order one, so the features are not ~0."""
    import pytorch_fid.inception as inception

    built = {}
    make = inception._inception_v3

    def capture(*args, **kwargs):
        built["net"] = make(*args, **kwargs)
        return built["net"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inception, "_inception_v3", capture)
        mp.setattr(inception, "load_state_dict_from_url", lambda *a, **k: built["net"].state_dict())
        torch.manual_seed(seed)
        wrapper = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[FID_DIMS]])
    for module in wrapper.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # running stats = this batch's
    with torch.no_grad():
        wrapper.train()(torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    return built["net"].state_dict()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """TORCH_HOME holding the random Inception where pytorch-fid looks, a fresh EBMKIT_CACHE,
    one thread (so that two processes compute bit-identical features)."""
    root = tmp_path_factory.mktemp("fid")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"TORCH_HOME": str(root / "torch"), "EBMKIT_CACHE": str(root / "cache"),
                           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "EBMKIT_NO_PLUGINS": "1"}.items():
            mp.setenv(key, value)
        path = default_weights_path()
        path.parent.mkdir(parents=True)
        torch.save(random_inception_state(), path)
        yield {"root": root, "weights": path, "env": dict(os.environ)}


def run(env, *args, module="ebmkit"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env={**env["env"], "COLUMNS": "80"}, timeout=600)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A two-step drl model of Fashion-MNIST (a tiny ResNet energy): images to score."""
    run_dir = tmp_path_factory.mktemp("image") / "run"
    recipe = Recipe.from_name("drl").override({
        "data": {"name": "fashion_mnist", "limit": 64}, "sampler.n_steps": 2, "train.batch_size": 8, "train.steps": 2,
        "network": {"name": "resnet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                    "embedding_dim": 16, "temb_dim": 16},
    })
    Trainer(recipe, run_dir, progress=False).fit()
    return run_dir


@pytest.fixture(scope="module")
def folders(env, image_run):
    """`ebmkit sample`'s PNGs of the samples `ebmkit eval` scores, and the reference images as
    PNGs written straight from the IDX file's bytes."""
    seed = Recipe.load(image_run / "config.json").eval.seed
    samples = env["root"] / "samples"
    r = run(env, "sample", image_run, "-n", N, "--seed", seed, "-o", f"{samples}/")
    assert r.returncode == 0, r.stderr
    ref = env["root"] / "ref"
    ref.mkdir()
    for i, image in enumerate(DATASETS.build(REF_SPEC).images):
        Image.fromarray(image[0].numpy()).save(ref / f"{i:03d}.png")
    return samples, ref


@pytest.fixture(scope="module")
def pytorch_fid_value(env, folders):
    """pytorch-fid's command line on the two folders."""
    r = run(env, *folders, "--device", "cpu", "--batch-size", 50, "--num-workers", 0, "--dims", FID_DIMS,
            module="pytorch_fid")
    assert r.returncode == 0, r.stderr
    return float(r.stdout.split("FID:")[-1])


def read_pngs(folder):
    files = sorted(folder.glob("*.png"))
    return torch.from_numpy(np.stack([np.array(Image.open(f)) for f in files]))[:, None]


# -- FID --------------------------------------------------------------------------------------
@needs_fashion_mnist
def test_eval_fid_equals_pytorch_fid_command_line(env, image_run, pytorch_fid_value):
    r = run(env, "eval", image_run, "-n", N, "--fid", "--ref", json.dumps(REF_SPEC), "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert pytorch_fid_value > 1e-3  # the random Inception's features are not degenerate
    assert metrics["fid"] == pytest.approx(pytorch_fid_value, rel=1e-6)
    # image models keep the flat-vector metrics; the 2D grid likelihood is not computed
    assert {"sw", "mmd", "energy_auc"} <= set(metrics) and "grid_log_likelihood" not in metrics
    assert all(np.isfinite(v) for v in metrics.values())
    saved = json.loads((image_run / "eval.json").read_text())
    assert saved["fid"] == metrics["fid"] and saved["fid_samples"] == N and '"limit": 16' in saved["fid_ref"]
    cached = list((env["root"] / "cache" / "fid").glob("fashion_mnist-*.npz"))
    assert len(cached) == 1


@needs_fashion_mnist
def test_data_set_folder_and_npz_references_agree(env, image_run, folders, pytorch_fid_value):
    samples_dir, ref_dir = folders
    seed = Recipe.load(image_run / "config.json").eval.seed
    generated = EnergyModel.from_run(image_run).generate(N, generator=torch.Generator().manual_seed(seed))
    pixels = read_pngs(samples_dir)
    assert torch.equal(pixels, to_uint8(generated))  # the PNGs hold exactly the quantised samples

    scorer = FID(cache_dir=env["root"] / "own-cache")
    by_data = scorer.reference_stats(REF_SPEC)
    by_folder = scorer.reference_stats(str(ref_dir))  # pytorch-fid reads the folder
    np.testing.assert_allclose(by_data.mu, by_folder.mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(by_data.sigma, by_folder.sigma, rtol=1e-9, atol=1e-12)
    assert by_data.mu.shape == (FID_DIMS,) and by_data.sigma.shape == (FID_DIMS, FID_DIMS)
    # the same images as floats in [−1, 1] or as uint8 give the same features
    np.testing.assert_array_equal(inception_features(pixels[:2], scorer.network),
                                  inception_features(generated[:2], scorer.network))

    npz = env["root"] / "ref.npz"  # written by pytorch-fid's own --save-stats
    r = run(env, "--save-stats", ref_dir, npz, "--device", "cpu", "--batch-size", 50, "--num-workers", 0,
            module="pytorch_fid")
    assert r.returncode == 0, r.stderr
    assert scorer(generated, str(npz)) == pytest.approx(pytorch_fid_value, rel=1e-6)
    # and ebmkit's cache file is pytorch-fid's format, holding the same statistics
    from pytorch_fid.fid_score import compute_statistics_of_path

    (cached,) = (env["root"] / "own-cache").glob("*.npz")
    mu, sigma = compute_statistics_of_path(str(cached), None, 1, FID_DIMS, "cpu")
    np.testing.assert_array_equal(mu, by_data.mu)
    np.testing.assert_array_equal(sigma, by_data.sigma)
    assert json.loads(str(np.load(cached)["key"]))["n"] == N


def test_frechet_distance_is_pytorch_fids_and_checks_widths():
    from ebmkit.metrics.frechet import feature_stats

    rng = np.random.default_rng(0)
    a, b = feature_stats(rng.normal(size=(50, 8))), feature_stats(rng.normal(1.0, 2.0, size=(60, 8)))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) > 8  # ‖Δμ‖² alone is ≈ 8
    with pytest.raises(MetricError, match="different widths: 8 and 4"):
        frechet_distance(a, feature_stats(rng.normal(size=(50, 4))))


# -- weights ----------------------------------------------------------------------------------
def test_explicit_weights_file_loads_into_the_same_network(env):
    a, b = FID(), FID(inception_weights=env["weights"])
    for (name, p), (_, q) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert torch.equal(p, q), name
    assert b.weights_path == env["weights"]


def test_missing_weights_say_where_to_put_them(env, tmp_path, monkeypatch):
    with pytest.raises(MetricError, match="missing.pth' not found"):
        FID(inception_weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a state dict")
    with pytest.raises(MetricError, match="not a state dict of pytorch-fid's FID Inception"):
        FID(inception_weights=tmp_path / "junk.pth")
    # pytorch-fid's usual place empty and no network: the message names the file and the place
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(MetricError) as info:
        FID()
    message = str(info.value)
    expected = tmp_path / "empty" / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    assert f"'{expected}' is missing" in message and "no network" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "--inception-weights" in message


# -- errors -----------------------------------------------------------------------------------
@needs_fashion_mnist
def test_bad_references_get_one_clear_error(env, image_run, tmp_path):
    assert_one_line_error(run(env, "eval", image_run, "-n", N, "--fid", "--ref", "nope"),
                          "--ref 'nope'", "fashion_mnist", "8gaussians", "folder of images", ".npz")
    assert_one_line_error(run(env, "eval", image_run, "-n", N, "--fid", "--inception-weights", tmp_path / "w.pth"),
                          "w.pth' not found")
    assert_one_line_error(run(env, "eval", image_run, "--ref", "fashion_mnist"), "add --fid")
    with pytest.raises(MetricError, match="'8gaussians' is not a set of images"):
        resolve_reference("8gaussians")
    with pytest.raises(MetricError, match="nope.npz' not found"):
        resolve_reference(str(tmp_path / "nope.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetricError, match="holds 0 images"):
        resolve_reference(str(tmp_path / "empty"))
    with pytest.raises(MetricError, match="is not valid JSON"):
        resolve_reference("{name: cifar10}")
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(MetricError, match="no 'mu' and 'sigma'"):
        resolve_reference(str(tmp_path / "bad.npz"))


def test_fid_needs_an_image_model(env, tmp_path):
    run_dir = tmp_path / "run2d"
    recipe = Recipe.from_name("drl").override({"network.width": 8, "network.depth": 1, "sampler.n_steps": 2,
                                               "train.batch_size": 8, "train.steps": 1})
    Trainer(recipe, run_dir, progress=False).fit()
    assert_one_line_error(run(env, "eval", run_dir, "--fid"), "score images", "(2,)")
    assert_one_line_error(run(env, "sample", run_dir, "-n", 3, "-o", f"{tmp_path}/pngs/"), "is a folder", ".npy or .png")


# -- ebmkit sample for images -----------------------------------------------------------------
@needs_fashion_mnist
def test_sample_writes_a_grid_a_folder_or_the_array(env, image_run, tmp_path):
    assert run(env, "sample", image_run, "-n", 6, "--seed", 3, "-o", tmp_path / "x.npy").returncode == 0
    x = torch.from_numpy(np.load(tmp_path / "x.npy"))
    assert x.shape == (6, 1, 28, 28)
    r = run(env, "sample", image_run, "-n", 6, "--seed", 3, "-o", tmp_path / "pngs")  # no suffix: a folder
    assert r.returncode == 0, r.stderr
    assert [p.name for p in sorted((tmp_path / "pngs").iterdir())] == [f"{i:06d}.png" for i in range(6)]
    assert torch.equal(read_pngs(tmp_path / "pngs"), to_uint8(x))
    assert_one_line_error(run(env, "sample", image_run, "-n", 2, "-o", tmp_path / "pngs"), "already holds PNG files")
    assert run(env, "sample", image_run, "-n", 6, "-o", tmp_path / "grid.png").returncode == 0
    # make_grid: isqrt(6) = 2 per row, 3 rows, 2 px padding around each 28×28 picture
    assert Image.open(tmp_path / "grid.png").size == (2 * 30 + 2, 3 * 30 + 2)
    assert_one_line_error(run(env, "sample", image_run, "-o", tmp_path / "x.jpg"), "--output must end in .npy or .png")
