"""Malformed configs and arguments (issue 9): each one fails with exit code ≠ 0 and one line on
stderr that names the field, option or file at fault and, where the choice is closed, what is
allowed; never a traceback or a usage box."""

import json

import numpy as np
import pytest
import yaml

from ebmkit import Recipe
from helpers import assert_one_line_error
from test_cli import run

# {d} is the folder the `files` fixture fills; "--dry-run" keeps pure config errors off the trainer.
DRY = ("train", "--dry-run")
CASES = {
    # --set KEY=VALUE
    "set without =": ([*DRY, "--set", "train.lr"], ["--set takes KEY=VALUE", "'train.lr'"]),
    "set empty key": ([*DRY, "--set", "=3"], ["--set takes KEY=VALUE", "'=3'"]),
    "lr nan": ([*DRY, "--set", "train.lr=nan"], ["train.lr", "finite number", "'nan'"]),
    "lr inf": ([*DRY, "--set", "train.lr=inf"], ["train.lr", "finite number", "'inf'"]),
    "lr negative": ([*DRY, "--set", "train.lr=-1"], ["train.lr", "greater than 0", "-1"]),
    "lr list": ([*DRY, "--set", "train.lr=[1]"], ["train.lr", "valid number", "[1]"]),
    "batch size 0": ([*DRY, "--set", "train.batch_size=0"], ["train.batch_size", "greater than or equal to 1"]),
    "batch size fraction": ([*DRY, "--set", "train.batch_size=2.5"], ["train.batch_size", "integer", "2.5"]),
    "steps negative": ([*DRY, "--set", "train.steps=-5"], ["train.steps", "greater than or equal to 1", "-5"]),
    "betas one value": ([*DRY, "--set", "train.betas=[0.9]"], ["train.betas", "item 1 is missing", "[0.9]"]),
    "beta above 1": ([*DRY, "--set", "train.betas=[0.9,1.5]"], ["train.betas.1", "less than 1", "1.5"]),
    "ema decay 1": ([*DRY, "--set", "train.ema_decay=1"], ["train.ema_decay", "less than 1"]),
    "lr schedule": ([*DRY, "--set", "train.lr_schedule=linear"], ["train.lr_schedule", "'constant' or 'cosine'"]),
    "device tpu": ([*DRY, "--set", "train.device=tpu"], ["train.device", "'tpu'", "auto, cpu, cuda, cuda:N"]),
    "unknown train key": ([*DRY, "--set", "train.nope=1"], ["train.nope", "unknown", "batch_size", "lr"]),
    "unknown top-level key": ([*DRY, "--set", "foo.bar=1"], ["unknown recipe field 'foo'", "train", "sampler"]),
    "train not a mapping": ([*DRY, "--set", "train=5"], ["train", "5"]),
    "option of an option": ([*DRY, "--set", "train.lr.x=1"], ["train.lr.x", "'lr' is not a group of options"]),
    "eval samples 1": ([*DRY, "--set", "eval.n_samples=1"], ["eval.n_samples", "greater than or equal to 2"]),
    # components: the registry's options
    "unknown sampler": ([*DRY, "--set", "sampler.name=nope"], ["unknown sampler 'nope'", "langevin"]),
    "num levels 0": ([*DRY, "--set", "schedule.num_levels=0"], ["schedules 'drl'", "num_levels", "greater than or equal to 2"]),
    "network width negative": ([*DRY, "--set", "network.width=-4"], ["networks 'mlp'", "width", "-4"]),
    "activation": ([*DRY, "--set", "network.activation=tanh"], ["activation", "'lrelu', 'silu' or 'relu'", "tanh"]),
    "sampler option nan": ([*DRY, "--set", "sampler.noise_scale=nan"], ["samplers 'langevin'", "noise_scale", "finite"]),
    "unknown sampler option": ([*DRY, "--set", "sampler.n_stepz=3"], ["n_stepz", "unknown", "n_steps"]),
    # train's own options (Click)
    "steps 0": ([*DRY, "--steps", "0"], ["--steps", "greater than or equal to 1", "train --help"]),
    "steps word": ([*DRY, "--steps", "abc"], ["--steps", "integer"]),
    "seed fraction": ([*DRY, "--seed", "1.5"], ["--seed", "integer"]),
    "device gpu7": ([*DRY, "--device", "gpu7"], ["train.device", "'gpu7'", "auto, cpu, cuda, cuda:N"]),
    "unknown option": ([*DRY, "--bogus"], ["No such option: --bogus"]),
    "unknown command": (["nope"], ["No such command 'nope'"]),
    # recipe files
    "recipe file missing": ([*DRY, "--recipe", "{d}/absent.json"], ["absent.json", "not found"]),
    "recipe bad json": ([*DRY, "--recipe", "{d}/broken.json"], ["broken.json", "not valid json"]),
    "recipe bad yaml": ([*DRY, "--recipe", "{d}/broken.yaml"], ["broken.yaml", "not valid yaml", "line 2, column 1"]),
    "recipe not text": ([*DRY, "--recipe", "{d}/binary.json"], ["binary.json", "not valid json", "utf-8"]),
    "recipe yaml list": ([*DRY, "--recipe", "{d}/list.yaml"], ["list.yaml", "must hold a mapping", "list"]),
    "recipe unknown key": ([*DRY, "--recipe", "{d}/extra.json"], ["extra.json", "foo: unknown key", "schedule", "train"]),
    "recipe lr nan": ([*DRY, "--recipe", "{d}/nan.yaml"], ["nan.yaml", "train.lr", "finite number"]),
    "recipe yaml repeats a key": ([*DRY, "--recipe", "{d}/twice.yaml"], ["twice.yaml", "line 4", "key 'lr' appears twice"]),
    "recipe json repeats a key": ([*DRY, "--recipe", "{d}/twice.json"], ["twice.json", "key 'name' appears twice"]),
    "show bad format": (["show", "drl", "--format", "toml"], ["--format", "'yaml' or 'json'", "'toml'"]),
    "show unknown recipe": (["show", "nope"], ["unknown recipe 'nope'", "drl"]),
    # --data: the user's points (no --dry-run: the file is read when the data set is built)
    "npy 1-D": (["train", "--data", "{d}/flat.npy", "--out", "{d}/run"], ["flat.npy", "2-D", "(5,)"]),
    "npy 3-D": (["train", "--data", "{d}/cube.npy", "--out", "{d}/run"], ["cube.npy", "2-D", "(5, 2, 2)"]),
    "npy NaN": (["train", "--data", "{d}/nan.npy", "--out", "{d}/run"], ["nan.npy", "NaN/Inf", "row 2"]),
    "npy strings": (["train", "--data", "{d}/strings.npy", "--out", "{d}/run"], ["strings.npy", "2-D float", "<U"]),
    "npy objects": (["train", "--data", "{d}/objects.npy", "--out", "{d}/run"], ["objects.npy", "not a numeric"]),
    "npy empty": (["train", "--data", "{d}/empty.npy", "--out", "{d}/run"], ["empty.npy", "0 row(s)"]),
    "npy not npy": (["train", "--data", "{d}/fake.npy", "--out", "{d}/run"], ["fake.npy", "not a .npy file"]),
    "csv word": (["train", "--data", "{d}/word.csv", "--out", "{d}/run"], ["word.csv", "line 3", "'abc'"]),
    "csv ragged": (["train", "--data", "{d}/ragged.csv", "--out", "{d}/run"], ["ragged.csv", "line 3", "3 values"]),
    "txt suffix": (["train", "--data", "{d}/points.txt", "--out", "{d}/run"], ["points.txt", "'.txt'", ".npy, .csv"]),
    "npz archive": (["train", "--data", "{d}/arrays.npz", "--out", "{d}/run"],
                    ["arrays.npz", "unsupported suffix '.npz'", ".npy, .csv", "numpy.save"]),
    # run directories
    "resume missing": (["train", "--resume", "{d}/absent"], ["absent", "not an ebmkit run directory"]),
    "resume with another recipe": (["train", "--resume", "{d}/absent", "--recipe", "cdrl"],
                                   ["--resume continues", "its own recipe", "drop --recipe"]),
    "resume into another folder": (["train", "--resume", "{d}/absent", "--out", "{d}/elsewhere"],
                                   ["its own folder", "drop --out"]),
    "resume with overwrite": (["train", "--resume", "{d}/absent", "--overwrite"], ["drop --overwrite"]),
    "out under a file": (["train", "--steps", "1", "--out", "{d}/points.txt/run"],
                         ["cannot write the run directory", "points.txt/run", "is a file"]),
    "overwrite a folder that is not a run": (["train", "--steps", "1", "--out", "{d}/mine", "--overwrite"],
                                             ["--overwrite", "'", "mine' is not an ebmkit run", "nothing in it is deleted"]),
    "pretraining a sampler that cannot": (["train", "--set", "train.pretrain_steps=10", "--steps", "1", "--out", "{d}/pre"],
                                          ["train.pretrain_steps is 10", "'langevin'", "set it to 0"]),
    # assemblies that cannot work: refused when the recipe is validated, before the run directory
    "dp_policy value on a per-level energy": (
        ["train", "--set", "sampler=dp_policy", "--steps", "1", "--out", "{d}/run"],
        ["sampler 'dp_policy' needs an energy that provides 'level_T'", "energy 'drl' does not", "scalar",
         "set sampler.value=time_independent"]),
    "adversarial divergence without a generator": (
        ["train", "--recipe", "ddaebm", "--set", "sampler=dp_policy", "--steps", "1", "--out", "{d}/run"],
        ["divergence 'jeffrey' needs a sampler that provides 'latent_generator'", "sampler 'dp_policy' does not",
         "Samplers that do at their defaults: adversarial"]),
    "resume not a run": (["train", "--resume", "{d}", "--steps", "5"], ["not an ebmkit run directory"]),
    "sample not a run": (["sample", "{d}", "-o", "{d}/s.npy"], ["config.json not found"]),
    "run config a list": (["sample", "{d}/list-run", "-o", "{d}/s.npy"], ["config.json", "no 'recipe' mapping"]),
    "run config without shape": (["sample", "{d}/shapeless-run", "-o", "{d}/s.npy"], ["config.json", "no data shape"]),
    "sample n 0": (["sample", "{d}", "-n", "0"], ["-n", "greater than or equal to 1"]),
    "sample n negative": (["sample", "{d}", "-n", "-3"], ["-n", "greater than or equal to 1"]),
    "sample n word": (["sample", "{d}", "-n", "abc"], ["-n", "integer"]),
    "sample suffix": (["sample", "{d}", "-o", "{d}/s.txt"], ["--output", ".npy or .png", "s.txt"]),
    "sample output under a file": (["sample", "{d}", "-o", "{d}/points.txt/s.npy"],
                                   ["cannot write --output", "points.txt/s.npy"]),
    "sample a billion seeds": (["sample", "{d}", "--seeds", "0-999999999"],
                               ["--seeds", "1,000,000,000 seeds", "at most 1,000,000"]),
    "sample seed beyond 64 bits": (["sample", "{d}", "--seeds", "0,99999999999999999999"], ["--seeds", "2^63"]),
    "sample no run": (["sample"], ["Missing argument"]),
    "eval n 1": (["eval", "{d}", "-n", "1"], ["-n", "greater than or equal to 2"]),
    "eval ref without fid": (["eval", "{d}", "--ref", "cifar10"], ["--ref", "--fid"]),
    "list unknown kind": (["list", "nope"], ["unknown component kind 'nope'", "samplers"]),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    recipe = Recipe.from_name("drl").model_dump(mode="json")
    (d / "broken.json").write_text('{"name": "drl",')
    (d / "broken.yaml").write_text("train: [1, 2\n")
    (d / "binary.json").write_bytes(b"\xff\xfe{}")
    (d / "list.yaml").write_text("- drl\n")
    (d / "list-run").mkdir()
    (d / "list-run" / "config.json").write_text("[]")
    (d / "shapeless-run").mkdir()
    (d / "shapeless-run" / "config.json").write_text(json.dumps({"recipe": recipe}))
    (d / "extra.json").write_text(json.dumps({**recipe, "foo": 1}))
    (d / "nan.yaml").write_text(yaml.safe_dump(recipe).replace("lr: 0.001", "lr: .nan"))
    np.save(d / "flat.npy", np.zeros(5))
    np.save(d / "cube.npy", np.zeros((5, 2, 2)))
    np.save(d / "nan.npy", np.array([[0.0, 1.0], [np.nan, 1.0]]))
    np.save(d / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(d / "objects.npy", np.array([[0.0, None], [1.0, 2.0]], dtype=object), allow_pickle=True)
    np.save(d / "empty.npy", np.zeros((0, 2)))
    (d / "fake.npy").write_text("1,2\n3,4\n")
    (d / "word.csv").write_text("x,y\n1,2\nabc,3\n")
    (d / "ragged.csv").write_text("1,2\n3,4\n5,6,7\n")
    (d / "points.txt").write_text("1,2\n3,4\n")
    np.savez(d / "arrays.npz", x=np.zeros((5, 2)))
    (d / "twice.yaml").write_text("name: drl\ntrain:\n  lr: 0.1\n  lr: 0.2\n")
    (d / "twice.json").write_text('{"name": "drl", "name": "cdrl"}')
    (d / "mine").mkdir()
    (d / "mine" / "eval.json").write_text("{}")  # the user's own file, named like a run's
    return d


def test_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("argv,needles", CASES.values(), ids=CASES.keys())
def test_bad_input_gets_one_line(files, argv, needles):
    result = run(*(a.format(d=files) for a in argv))
    assert_one_line_error(result, "error:", *needles)
    assert not (files / "run").exists()  # nothing was trained


@pytest.mark.parametrize("bad", [["--set", "train.lr=nan"], ["--data", "{d}/nan.npy"]], ids=["option", "data file"])
def test_failed_overwrite_keeps_the_run(files, bad):
    """--overwrite clears the old run only once the new one is built: a bad input loses nothing."""
    old = files / "old-run"
    old.mkdir(exist_ok=True)
    kept = {"config.json": json.dumps({"recipe": Recipe.from_name("drl").model_dump(mode="json"), "shape": [2]}),
            "model.safetensors": "model.safetensors", "stats.jsonl": "stats.jsonl"}
    for name, text in kept.items():
        (old / name).write_text(text)
    result = run("train", "--out", str(old), "--overwrite", *(a.format(d=files) for a in bad))
    assert_one_line_error(result, "error:")
    assert {p.name: p.read_text() for p in old.iterdir() if p.name != ".lock"} == kept
