"""benchmarks/gpu_check.py, the GPU path's one prepared check, runs here as ``--device cpu --tiny``:
the same code with tiny networks, no GPU, on random images in each data set's real layout (nothing
downloaded). Its JSON must list every image preset, trained finite, resumed exactly (dropout
included: its masks' stream is checkpointed) and sampled at the data's shape; the CUDA-only checks
are listed as not run."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ebmkit import Recipe
from ebmkit.data.images import ImageDataset
from ebmkit.registry import DATASETS, registry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
COMMITTED = [ROOT / "benchmarks" / "gpu.md", ROOT / "benchmarks" / "gpu.json"]
NAMED = ["cdrl_cifar10", "cdrl_fmnist", "ddaebm_celeba64", "ddaebm_cifar10", "ddaebm_fmnist", "drl_cifar10",
         "drl_fmnist", "dxmi_cifar10", "dxmi_fmnist"]
SHAPES = {"cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28), "mnist": (1, 28, 28)}
CUDA_ONLY = {"bf16", "torchrun", "fp32+compile", "bf16+compile"}


def image_presets() -> set[str]:
    """The registered presets whose data set's class is an image set."""
    presets = set()
    for name in registry("recipes").names():
        factory = DATASETS.get(Recipe.from_name(name).data["name"]).obj
        if isinstance(factory, type) and issubclass(factory, ImageDataset):
            presets.add(name)
    return presets


def expected_shape(recipe: Recipe) -> tuple[int, ...]:
    data = recipe.data
    if data["name"] == "image_folder":
        return (data.get("channels", 3), data["size"], data["size"])
    return SHAPES[data["name"]]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """The tiny CPU run, once for the module: its process, its JSON (rows by preset and mode), its folder."""
    out = tmp_path_factory.mktemp("gpu_check")
    before = [(p.stat().st_mtime_ns if p.exists() else None) for p in COMMITTED]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if os.environ.get("EBMKIT_TEST_PLUGINS") != "1":  # as conftest: the built-ins only
        env["EBMKIT_NO_PLUGINS"] = "1"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert (out / "gpu.json").is_file(), done.stderr[-3000:]
    assert [(p.stat().st_mtime_ns if p.exists() else None) for p in COMMITTED] == before, "--tiny wrote gpu.md"
    report = json.loads((out / "gpu.json").read_text())
    rows = {(r["preset"], r["mode"]): r for r in report["rows"]}
    return SimpleNamespace(done=done, report=report, out=out, rows=rows)


def test_every_image_preset_is_checked(check):
    report, rows = check.report, check.rows
    presets = image_presets()
    assert set(NAMED) <= presets
    assert {preset for preset, _ in rows} == presets
    for preset in presets:
        for mode in ("fp32", "sample", "resume"):
            assert rows[preset, mode]["status"] != "skipped", rows[preset, mode]
        for mode in CUDA_ONLY:
            assert rows[preset, mode]["status"] == "skipped" and "CUDA only" in rows[preset, mode]["note"]
    assert report["device"].startswith("CPU") and report["tiny"] is True
    table = (check.out / "gpu.md").read_text().count("\n| ")
    assert table == len(report["rows"]) + 2  # the header, its rule, one row per check


@pytest.mark.parametrize("name", NAMED)
def test_trains_finite(check, name):
    row = check.rows[name, "fp32"]
    assert row["status"] == "ok", row["note"]
    assert row["finite"] is True and row["ms_per_iter"] > 0


@pytest.mark.parametrize("name", NAMED)
def test_samples_sixteen_seeds_at_the_data_shape(check, name):
    row = check.rows[name, "sample"]
    assert row["status"] == "ok", row["note"]
    assert row["finite"] is True and row["samples_per_s"] > 0
    assert row["sample_shape"] == [16, *expected_shape(Recipe.from_name(name))]


@pytest.mark.parametrize("name", NAMED)
def test_resume_is_exact(check, name):
    """Bitwise, the four presets whose U-Nets use dropout included (cdrl_cifar10, ddaebm_cifar10,
    ddaebm_celeba64, dxmi_cifar10): this check found that the checkpoint lacked torch's global
    stream, from which nn.Dropout draws its masks."""
    row = check.rows[name, "resume"]
    assert row["finite"] is True, row["note"]
    assert row["resume_exact"] is True, row["note"]


def test_one_line_per_failure_and_the_exit_status(check):
    done, report = check.done, check.report
    failed = [r for r in report["rows"] if r["status"] == "failed"]
    assert done.returncode == (1 if failed else 0), done.stderr[-3000:]
    lines = [f"FAIL {r['preset']} {r['mode']}: {r['note'] or 'not finite'}" for r in failed]
    assert done.stdout.splitlines() == report["failures"] == lines
    assert "Traceback" not in done.stderr
