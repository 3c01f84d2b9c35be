"""Data of any scale: a file is trained standardised and everything is mapped back to its units;
the data's local scale caps Langevin steps; a run knows which data it trained on."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.data.summary import local_scale, summarize
from ebmkit.data.transform import Standardize
from ebmkit.digest import file_sha256
from ebmkit.evaluation import evaluate
from ebmkit.model import EnergyModel
from ebmkit.registry import SCHEDULES
from ebmkit.training import Trainer, TrainingError
from ebmkit.types import DataSummary
from helpers import assert_one_line_error
from test_cli import run

TINY = {"network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 30,
        "train.threads": 1, "eval.n_samples": 500, "eval.grid_resolution": 64}


def points(n=2000, seed=0) -> np.ndarray:
    return DATASETS.build("8gaussians").sample(n, generator=torch.Generator().manual_seed(seed)).double().numpy()


def train_file(tmp_path, array, name, **changes) -> EnergyModel:
    np.save(tmp_path / f"{name}.npy", array)
    recipe = Recipe.from_name("drl").override({**TINY, "data": {"name": "file", "path": str(tmp_path / f"{name}.npy")},
                                               **changes})
    return Trainer(recipe, tmp_path / name, progress=False).fit()


# -- the transform ------------------------------------------------------------------------
def test_standardize_is_the_per_axis_mean_and_std_and_inverts():
    x = torch.from_numpy(points() * np.array([100.0, 0.01]) + np.array([5.0, -3.0]))
    t = Standardize.of(x)
    np.testing.assert_allclose(t.shift_values, x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(t.scale_values, x.numpy().std(0), rtol=1e-12)
    z = t(x.float())
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.inverse(z), x.float(), rtol=1e-6, atol=1e-4)
    assert t.log_det == pytest.approx(-np.log(x.numpy().std(0)).sum())
    assert Standardize.from_config(json.loads(json.dumps(t.to_config()))).scale_values == t.scale_values
    constant = Standardize.of(torch.tensor([[1.0, 2.0], [1.0, 4.0]]))
    assert constant.scale_values == [1.0, 1.0]  # a single value: nothing to divide by


def test_the_model_speaks_the_data_units_with_the_jacobian():
    recipe = Recipe.from_name("drl").override({"network.width": 16})
    transform = Standardize([3.0, -1.0], [100.0, 0.5])
    torch.manual_seed(0)
    plain = EnergyModel(recipe, (2,)).eval()
    mapped = EnergyModel(recipe, (2,), transform).eval()
    mapped.load_state_dict(plain.state_dict())
    x = torch.randn(64, 2) * torch.tensor([100.0, 0.5]) + torch.tensor([3.0, -1.0])
    z = (x - torch.tensor([3.0, -1.0])) / torch.tensor([100.0, 0.5])
    # log p_x(x) = log p_z(z) − log 100 − log 0.5, so E_x(x) = E_z(z) + log 100 + log 0.5
    torch.testing.assert_close(mapped.data_energy(x), plain.data_energy(z) + math.log(100.0) + math.log(0.5))
    g = torch.Generator().manual_seed(3)
    expected = plain.generate(16, generator=g) * torch.tensor([100.0, 0.5]) + torch.tensor([3.0, -1.0])
    torch.testing.assert_close(mapped.generate(16, generator=torch.Generator().manual_seed(3)), expected)
    assert torch.equal(mapped.generate(seeds=range(4)), transform.inverse(plain.generate(seeds=range(4))))


def test_data_x100_trains_the_model_that_its_standardised_points_train(tmp_path):
    """8gaussians × 100 (standardised by the trainer) and the same standardised points written as
    they are (standardize=false): the same model bit for bit, whose samples come out ×σ + μ."""
    x100 = torch.from_numpy(points() * 100).float()
    t = Standardize.of(x100)
    hundred = train_file(tmp_path, x100.numpy(), "hundred")
    plain = train_file(tmp_path, t(x100).numpy(), "plain", **{"data.standardize": False})
    assert hundred.transform.scale_values == t.scale_values and plain.transform is None
    for (name, a), b in zip(hundred.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    z = plain.generate(64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(hundred.generate(64, generator=torch.Generator().manual_seed(0)), t.inverse(z))


def test_the_grid_log_likelihood_in_data_units_carries_the_jacobian(tmp_path):
    """The grid log-likelihood of a standardised model in the data's units equals the one computed
    in the model's units (the same weights with no transform, on the grid's image in z) minus
    Σ log σ_i."""
    hundred = train_file(tmp_path, points() * 100, "hundred")
    t = hundred.transform
    dataset = DATASETS.build(hundred.recipe.data)
    config = hundred.recipe.eval
    ll_x = evaluate(hundred, dataset, config)["grid_log_likelihood"]

    plain = EnergyModel(hundred.recipe, (2,)).eval()  # the same weights, in the model's units
    plain.load_state_dict(hundred.state_dict())
    lo, hi = dataset.box
    n = config.grid_resolution
    centre = lo + (hi - lo) / n * (torch.arange(n, dtype=torch.float64) + 0.5)
    mean, std = torch.tensor(t.shift_values, dtype=torch.float64), torch.tensor(t.scale_values, dtype=torch.float64)
    grid_z = (torch.cartesian_prod(centre, centre) - mean) / std
    with torch.no_grad():
        log_z = torch.logsumexp(-plain.data_energy(grid_z.float()).double(), 0) + torch.log((hi - lo) / n / std).sum()
        heldout = dataset.sample(config.n_samples, generator=torch.Generator().manual_seed(config.seed + 2))
        z = ((heldout.double().clamp(lo, hi) - mean) / std).float()
        ll_z = float((-plain.data_energy(z).double()).mean() - log_z)
    assert ll_x == pytest.approx(ll_z - float(torch.log(std).sum()), abs=1e-4)


def test_standardize_false_trains_the_numbers_as_given(tmp_path):
    model = train_file(tmp_path, points(), "raw", **{"data.standardize": False})
    assert model.transform is None
    assert json.loads((tmp_path / "raw" / "config.json").read_text())["data_transform"] is None


def test_train_standardize_true_measures_a_built_in_set_and_resumes_with_it(tmp_path):
    """train.standardize: true standardises a built-in set by 100,000 of its points (8gaussians:
    mean 0, std √(2² + 0.02²)·… ≈ 2.02 per axis), records it in config.json, and a resumed run reads
    it back rather than measuring again."""
    recipe = Recipe.from_name("drl").override({**TINY, "train.standardize": True})
    model = Trainer(recipe, tmp_path / "std", progress=False).fit()
    x = DATASETS.build("8gaussians").sample(100_000, generator=torch.Generator().manual_seed(20_212)).double()
    np.testing.assert_allclose(model.transform.shift_values, x.mean(0).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.transform.scale_values, x.std(0, unbiased=False).numpy(), rtol=1e-12)
    assert model.transform.scale_values == pytest.approx([2.02, 2.02], abs=0.02)
    saved = json.loads((tmp_path / "std" / "config.json").read_text())["data_transform"]
    assert saved == model.transform.to_config()
    longer = recipe.override({"train.steps": 40})
    resumed = Trainer(longer, tmp_path / "std", resume=True, progress=False).fit()
    assert resumed.transform.to_config() == saved
    # false keeps even a file's numbers as given; null (the default) follows the data set
    raw = train_file(tmp_path, points() * 100, "raw", **{"train.standardize": False})
    assert raw.transform is None


def test_train_standardize_true_refuses_images_in_one_line(tmp_path):
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    r = run("train", "--no-progress", "--data", "image_folder", "--set", f"data.root={tmp_path}", "--set",
            "train.standardize=true", "--set", "train.steps=1", "--out", str(tmp_path / "run"))
    assert_one_line_error(r, "train.standardize: true is for point data", "image set",
                          "set train.standardize to null or false")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_train_says_what_it_did_to_the_data(tmp_path):
    np.save(tmp_path / "big.npy", points() * 1e8)
    r = run("train", "--no-progress", "--data", str(tmp_path / "big.npy"), "--out", str(tmp_path / "run"),
            *(a for k, v in TINY.items() for a in ("--set", f"{k}={v}")))
    assert r.returncode == 0, r.stderr
    line = r.stderr.splitlines()[0]
    assert line.startswith("data: FileDataset(") and "standardised per axis (mean [" in line
    assert "samples, energies and pictures are in the data's units; local scale 0.0" in line
    r = run("train", "--no-progress", "--out", str(tmp_path / "toy"), *(a for k, v in TINY.items()
                                                                       for a in ("--set", f"{k}={v}")))
    assert r.stderr.splitlines()[0].startswith("data: EightGaussians(") and "used as given" in r.stderr


# -- the local scale and the step cap ------------------------------------------------------
def test_local_scale_is_the_median_distance_to_the_8th_neighbour():
    """On a square lattice of spacing h an inner point's 8th neighbour is a diagonal one, at h√2;
    repeated points count once."""
    h = 0.3
    grid = torch.cartesian_prod(torch.arange(40.0), torch.arange(40.0)) * h
    assert local_scale(torch.cat([grid, grid[:500]])) == pytest.approx(h * math.sqrt(2), rel=1e-6)  # float32 grid
    assert local_scale(torch.zeros(5, 2)) is None


def test_local_scale_of_the_toy_sets_and_in_the_model_units():
    scales = {name: summarize(DATASETS.build(name)).local_scale for name in ("25gaussians", "pinwheel")}
    assert 0.015 < scales["25gaussians"] < 0.03 and scales["pinwheel"] > 0.09
    dataset = DATASETS.build("8gaussians")
    t = Standardize([0.0, 0.0], [10.0, 10.0])
    assert summarize(dataset, t).local_scale == pytest.approx(summarize(dataset).local_scale / 10, rel=1e-5)


def test_step_cap_formula():
    """s_t² = min(b² c_t σ²_{t+1}, κ² r_t² (ᾱ_t ℓ² + σ̄_t²)), from DDPM's linear β table by hand."""
    s = SCHEDULES.build({"name": "drl", "num_levels": 6})
    betas = np.linspace(1e-4, 0.02, 1000)
    abar_all = np.cumprod(1 - betas)
    idx = [0, 100, 200, 300, 400, 500, 999]
    abar = abar_all[idx]
    sigma_next2 = 1 - abar[1:] / abar[:-1]
    sbar = np.sqrt(1 - abar)
    r = np.sqrt(abar[1:] / abar[:-1])
    r[-1] = 1.0  # the untethered top pair lives on x_{T-1} itself
    b2, ell, kappa = 2e-3, 0.0224, 1.6
    uncapped = b2 * sigma_next2 / sbar[0]
    expected = np.minimum(uncapped, kappa**2 * r**2 * (abar[:-1] * ell**2 + sbar[:-1] ** 2))
    np.testing.assert_allclose(s.langevin_step_sizes(b2, "constant", ell, kappa).numpy(), expected, rtol=1e-10)
    assert expected[0] < uncapped[0] and np.allclose(expected[1:], uncapped[1:])  # only level 0 is narrow
    np.testing.assert_allclose(s.langevin_step_sizes(b2, "constant").numpy(), uncapped, rtol=1e-10)


def test_auto_options_are_fitted_to_the_data_and_saved(tmp_path):
    preset = Recipe.from_name("cdrl")
    assert preset.energy["local_scale"] == "auto" and preset.sampler["refine"]["local_scale"] == "auto"
    fitted = preset.fitted(DataSummary(local_scale=0.02))
    assert fitted.energy["local_scale"] == 0.02 and fitted.sampler["refine"]["local_scale"] == 0.02
    assert fitted.sampler["initializer"] == preset.sampler["initializer"]
    model = Trainer(Recipe.from_name("drl").override({**TINY, "train.steps": 2, "data": "25gaussians"}),
                    tmp_path / "run", progress=False).fit()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["recipe"]["energy"]["local_scale"]
    assert saved == pytest.approx(summarize(DATASETS.build("25gaussians")).local_scale)
    capped = model.schedule.langevin_step_sizes(2e-3, "constant", saved, 1.6).float()
    torch.testing.assert_close(model.energy.step_sizes, capped)
    assert capped[0] < model.schedule.langevin_step_sizes(2e-3, "constant")[0] / 10  # the narrow modes' cap
    assert EnergyModel.from_run(tmp_path / "run").recipe.energy["local_scale"] == saved


# -- data identity -------------------------------------------------------------------------
def test_a_run_records_its_data_and_works_from_any_folder(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "pts.npy", points())
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    r = run("train", "--no-progress", "--data", "pts.npy", "--out", "run", *sets, cwd=tmp_path / "a")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "a" / "run" / "config.json").read_text())
    where = str((tmp_path / "a" / "pts.npy").resolve())
    assert config["recipe"]["data"]["path"] == where
    assert config["data_source"] == {"paths": {"path": where}, "sha256": file_sha256(tmp_path / "a" / "pts.npy")}
    run_dir = str(tmp_path / "a" / "run")
    r = run("eval", run_dir, "--json", "-n", "200", cwd=tmp_path)  # another folder
    assert r.returncode == 0, r.stderr
    r = run("train", "--no-progress", "--resume", run_dir, "--steps", "35", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_resume_on_changed_data_is_refused_with_both_hashes(tmp_path):
    model = train_file(tmp_path, points(), "pts")
    run_dir, data = tmp_path / "pts", tmp_path / "pts.npy"
    before = file_sha256(data)
    state = (run_dir / "checkpoint" / "state.json").read_bytes()
    np.save(data, points() * 100)
    after = file_sha256(data)
    r = run("train", "--resume", str(run_dir), "--steps", "40")
    assert_one_line_error(r, "changed since the run started", str(data.resolve()), after[:12], before[:12],
                          "resume needs the same data")
    assert (run_dir / "checkpoint" / "state.json").read_bytes() == state
    with pytest.raises(TrainingError, match="changed since the run started"):
        Trainer(model.recipe.override({"train.steps": 40}), run_dir, resume=True, progress=False).fit()


def test_sample_needs_no_data_and_eval_says_how_to_give_it(tmp_path):
    train_file(tmp_path, points(), "pts")
    kept = tmp_path / "elsewhere.npy"
    shutil.move(tmp_path / "pts.npy", kept)
    r = run("sample", str(tmp_path / "pts"), "-n", "20", "-o", str(tmp_path / "s.npy"))
    assert r.returncode == 0, r.stderr
    assert_one_line_error(run("eval", str(tmp_path / "pts")), "pts.npy", "not found", "--data PATH")
    r = run("eval", str(tmp_path / "pts"), "--data", str(kept), "-n", "200", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "pts" / "eval.json").read_text())["data"]["path"] == str(kept)


def test_a_shared_model_names_no_local_path(tmp_path):
    model = train_file(tmp_path, points(), "pts")
    folder = model.save_pretrained(tmp_path / "repo")
    config = json.loads((folder / "config.json").read_text())
    assert config["recipe"]["data"]["path"] == "pts.npy" and "data_source" not in config
    assert str(tmp_path) not in (folder / "config.json").read_text() + (folder / "README.md").read_text()
    again = EnergyModel.from_pretrained(folder)  # the identity in its weights matches, the path aside
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(again.generate(10, generator=g), model.generate(10, generator=torch.Generator()
                                                                               .manual_seed(0)))


def test_a_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeff1.5,2\n3,4\n5,6\n".encode("utf-8"))
    (tmp_path / "header.csv").write_bytes("\ufeffx,y\n1.5,2\n3,4\n".encode("utf-8"))
    assert DATASETS.build({"name": "file", "path": str(tmp_path / "bom.csv")}).points.tolist() == \
        [[1.5, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert DATASETS.build({"name": "file", "path": str(tmp_path / "header.csv")}).points.tolist() == \
        [[1.5, 2.0], [3.0, 4.0]]


def test_a_model_built_without_its_data_has_no_cap():
    """A model built in Python from a preset keeps 'auto', which is measured only by the trainer."""
    model = EnergyModel(Recipe.from_name("drl"), (2,))
    uncapped = SCHEDULES.build(Recipe.from_name("drl").schedule).langevin_step_sizes(2e-3, "constant")
    torch.testing.assert_close(model.energy.step_sizes, uncapped.float())
