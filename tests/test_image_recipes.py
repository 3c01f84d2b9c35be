"""Every recipe's image presets run end to end: the CIFAR-10 ones (scaled down) on a folder in
CIFAR-10's real pickle layout, the Fashion-MNIST ones on the real data set."""

import json

import pytest
import torch

from ebmkit import Recipe
from ebmkit.model import EnergyModel
from ebmkit.testing import write_fake_cifar10
from ebmkit.training import Trainer
from helpers import needs_fashion_mnist

RECIPES = ["drl", "cdrl", "ddaebm", "dxmi", "dsm", "energy_matching"]


def shrink(node):
    """The same assembly with every image network 8 channels wide and one block deep."""
    if isinstance(node, dict):
        node = {k: shrink(v) for k, v in node.items()}
        if node.get("name") in ("unet", "resnet"):
            node.update(channels=8, num_res_blocks=1)
            if node["name"] == "unet":
                node.update(latent_embedding_dim=16, mapping_layers=1)
            else:
                node.update(embedding_dim=16, temb_dim=16)
        return node
    if isinstance(node, list):
        return [shrink(v) for v in node]
    return node


CHAIN_LENGTH = {"langevin": "sampler.n_steps", "cooperative": "sampler.refine.n_steps",
                "reverse_diffusion": "sampler.steps_per_level", "tempered_langevin": "sampler.n_steps"}


def few_steps(recipe: Recipe, changes: dict) -> Recipe:
    """Shrunk networks, tiny batches, two steps (two pretraining steps where there are any; one per phase
    where there are phases), at most 10 levels."""
    small = Recipe.create(**shrink(recipe.model_dump(mode="json")))
    changes = {"train.steps": 2, "train.batch_size": 4, "train.log_every": 1, "train.checkpoint_every": 1,
               "train.pretrain_steps": min(recipe.train.pretrain_steps, 2), **changes}
    if recipe.sampler["name"] in CHAIN_LENGTH:
        changes[CHAIN_LENGTH[recipe.sampler["name"]]] = 2
    if recipe.train.phases:  # Energy Matching's warm-up and main phase: one step each
        changes["train.phases"] = [{**p.model_dump(), "steps": 1} for p in recipe.train.phases]
        changes["train.steps"] = len(recipe.train.phases)
    if (recipe.schedule or {}).get("num_levels", 0) > 10:  # DSM's presets: 100 and 232 levels, a gradient each
        changes["schedule.num_levels"] = 10
    return small.override(changes)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=200, n_test=50)


@pytest.mark.parametrize("name", RECIPES)
def test_cifar10_preset_trains_on_a_cifar10_folder(name, cifar_root, tmp_path):
    preset = Recipe.from_name(f"{name}_cifar10")
    assert preset.data["name"] == "cifar10" and preset.data["hflip"] is True
    recipe = few_steps(preset, {"data.root": str(cifar_root), "train.eval_every": 0})
    model = Trainer(recipe, tmp_path / "run", progress=False).fit()
    x = model.generate(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 3, 32, 32) and torch.isfinite(x).all()
    reloaded = EnergyModel.from_run(tmp_path / "run")
    assert torch.equal(reloaded.generate(3, generator=torch.Generator().manual_seed(0)), x)
    assert (tmp_path / "run" / "samples.png").is_file()


def test_celeba64_preset_trains_on_a_folder_of_aligned_faces(tmp_path):
    """ddaebm_celeba64 (scaled down) on CelebA's layout: 178×218 JPEGs cut to the face box, 64²."""
    from PIL import Image

    preset = Recipe.from_name("ddaebm_celeba64")
    assert preset.data["crop"] == [15, 40, 163, 188] and preset.data["size"] == 64 and preset.data["hflip"] is True
    faces = tmp_path / "img_align_celeba"
    faces.mkdir()
    rng = torch.Generator().manual_seed(0)
    for i in range(6):
        pixels = torch.randint(0, 256, (218, 178, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(faces / f"{i + 1:06d}.jpg")
    recipe = few_steps(preset, {"data.root": str(faces), "train.eval_every": 0})
    model = Trainer(recipe, tmp_path / "run", progress=False).fit()
    x = model.generate(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 64, 64) and torch.isfinite(x).all() and x.abs().max() <= 1  # tanh generator


@needs_fashion_mnist
@pytest.mark.parametrize("name", RECIPES)
def test_fmnist_preset_trains_and_scores_itself(name, tmp_path):
    preset = Recipe.from_name(f"{name}_fmnist")
    assert preset.data["name"] == "fashion_mnist" and preset.train.eval_metric == "fd_fmnist"
    recipe = few_steps(preset, {"data.limit": 500, "train.eval_every": 2, "train.eval_samples": 16})
    Trainer(recipe, tmp_path / "run", progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["fd_fmnist"] > 0
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()


def test_paper_presets_keep_the_papers_settings():
    drl, cdrl = Recipe.from_name("drl_cifar10"), Recipe.from_name("cdrl_cifar10")
    assert (drl.network["channels"], drl.network["channel_mult"], drl.network["num_res_blocks"]) == (128, [1, 2, 2, 2], 8)
    assert drl.energy["b_square"] == 2e-4 and drl.sampler["n_steps"] == 30 and drl.train.lr == 1e-4
    assert cdrl.energy["b_square"] == 4e-4 and cdrl.sampler["refine"]["n_steps"] == 15
    assert cdrl.network["temb_activation"] is True and cdrl.train.sampler_lr == 1e-5
    assert cdrl.sampler["regression_weight"] == 0 and cdrl.train.pretrain_steps == 0  # the paper's initializer
    dd = Recipe.from_name("ddaebm_cifar10")
    assert (dd.schedule["beta_min"], dd.schedule["beta_max"], dd.schedule["num_levels"]) == (0.1, 20.0, 4)
    assert dd.sampler["latent_dim"] == 100 and dd.sampler["generator"]["output"] == "tanh"
    assert dd.energy["name"] == "residual_norm" and dd.network["name"] == "unet"
    celeba = Recipe.from_name("ddaebm_celeba64")
    assert (celeba.network["channels"], celeba.network["channel_mult"]) == (64, [1, 1, 2, 2, 4])
    assert (celeba.divergence["r1_gamma"], celeba.train.lr, celeba.train.ema_decay, celeba.train.batch_size) == \
        (0.002, 5e-5, 0.999, 128)
    dx = Recipe.from_name("dxmi_cifar10")
    assert dx.schedule["num_levels"] == 10 and dx.sampler["value"] == "time_independent"
    assert (dx.sampler["tau"], dx.sampler["tau_velocity"], dx.train.lr, dx.train.sampler_lr) == (0.1, 0.01, 1e-5, 1e-7)
    ds = Recipe.from_name("dsm_cifar10")  # NCSNv2's configs/cifar10.yml, σ's and ε in [−1, 1] units (×2, ×4)
    assert (ds.schedule["num_levels"], ds.schedule["sigma_max"], ds.schedule["sigma_min"]) == (232, 100.0, 0.02)
    assert (ds.sampler["method"], ds.sampler["steps_per_level"], ds.sampler["eps"]) == ("annealed_langevin", 5, 2.48e-5)
    assert ds.sampler["denoise_last"] is True and ds.sampler["between_levels"] == "rescale"
    assert (ds.divergence["weighting"], ds.divergence["reduce"]) == ("sigma_sq", "sum")
    assert (ds.train.lr, ds.train.batch_size, ds.train.steps, ds.train.ema_decay) == (1e-4, 128, 300_000, 0.999)
    em = Recipe.from_name("energy_matching_cifar10")  # specs/energy_matching.md §3, §5 and the README's flags
    assert [(p.name, p.steps, p.ema_decay, p.divergence) for p in em.train.phases] == \
        [("warmup", 145_000, 0.9999, {"lambda_cd": 0.0}), ("main", 2000, 0.99, {})]
    assert (em.train.lr, em.train.betas, em.train.warmup, em.train.grad_clip, em.train.batch_size) == \
        (1.2e-3, (0.9, 0.95), 10_000, 1.0, 512)
    assert (em.divergence["lambda_cd"], em.divergence["cd_neg_clamp"], em.divergence["cd_trim_fraction"],
            em.divergence["sigma"], em.divergence["coupling"]) == (1e-3, 0.02, 0.1, 0.0, {"name": "exact_ot", "resample": True})
    assert (em.sampler["n_steps"], em.sampler["dt"], em.sampler["temperature"], em.sampler["init"]) == \
        (200, 0.01, {"name": "ramp", "epsilon_max": 0.01, "cutoff": 1.0}, "split")
    assert (em.sampler["integrator"], em.sampler["generate_time"], em.sampler["clamp"]) == ("heun", 3.25, [-1.0, 1.0])


def test_fd_fmnist_needs_fashion_mnist_shaped_images(tmp_path):
    recipe = Recipe.from_name("drl").override({"train.eval_metric": "fd_fmnist", "train.steps": 1})
    with pytest.raises(Exception, match="fd_fmnist' scores 28×28 grey images.*use 'sw'"):
        Trainer(recipe, tmp_path / "run", progress=False).fit()
