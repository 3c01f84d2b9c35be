"""The training step keeps its bits: every 2D preset and one Fashion-MNIST preset, trained 50
iterations with seed 0 on one thread, hold exactly the parameters, buffers, optimizer state and
EMA recorded in benchmarks/step_hashes.json (recorded before the trainer's step became a plan).

Float results depend on the kernels torch picks, so the record holds for the torch version and CPU
capability it names; elsewhere these tests skip and say which were recorded."""

import importlib.util
import json
from pathlib import Path

import pytest

from helpers import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("step_hashes", ROOT / "benchmarks" / "step_hashes.py")
step_hashes = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(step_hashes)
RECORD = json.loads(step_hashes.RECORD.read_text())


def _check(name):
    if RECORD["platform"] != step_hashes.platform_key():
        pytest.skip(f"step_hashes.json holds the bits of {RECORD['platform']}; this is {step_hashes.platform_key()}")
    measured = step_hashes.measure(name)["digests"]
    assert step_hashes.compare(RECORD, name, measured) == []


def test_the_record_covers_every_2d_preset_and_one_image_preset():
    assert set(RECORD["presets"]) == {*step_hashes.PRESETS_2D, step_hashes.IMAGE_PRESET}
    assert RECORD["steps"] == step_hashes.STEPS == 50


def test_compare_names_each_digest_that_differs():
    record = {"presets": {"drl": {"parameters": "a" * 64, "buffers": "b" * 64}}}
    assert step_hashes.compare(record, "drl", {"parameters": "a" * 64, "buffers": "c" * 64}) == [
        f"drl: buffers {'c' * 12} ≠ recorded {'b' * 12}"]


@pytest.mark.slow
@pytest.mark.parametrize("name", step_hashes.PRESETS_2D)
def test_2d_preset_trains_to_the_recorded_bits(name):
    _check(name)


@pytest.mark.slow
@needs_fashion_mnist
def test_image_preset_trains_to_the_recorded_bits():
    _check(step_hashes.IMAGE_PRESET)
