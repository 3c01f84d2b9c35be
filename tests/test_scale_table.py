"""benchmarks/scale.py builds its table over several calls: finished cells are kept in scale.json and
written back into a fresh --out, and a partial table says what is missing instead of inventing it."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(recipe, data, seed, sw=None, diverged=False):
    row = {"recipe": recipe, "data": data, "seed": seed, "seconds": 1.0}
    if diverged:
        row.update(diverged="blew up", diverged_at=10)
    else:
        row.update(sw=sw, sw_per_std=sw / 2, mmd=0.0, energy_auc=0.9)
    return row


def _references(scale):
    labels = scale.SETS + [f"{n}_{s}" for n in scale.SETS for s in scale.SCALES] + ["8gaussians_axis0x20"]
    return [{"data": d, "std": 1.0, "sw": 0.05, "sw_per_std": 0.05, "mmd": 0.0} for d in labels]


def _cells(text, start):
    """The cells of the table row that starts with ``start``."""
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _header():
    return {"command": "c", "date": "d", "machine": "m", "versions": "v", "finished": "3 of 100 cells"}


def test_partial_table_marks_missing_cells_and_gives_no_mean_below_three_seeds(scale):
    from ebmkit.bench import summarize

    runs = [_row("drl", "25gaussians", 0, 0.04), _row("drl", "25gaussians", 1, 0.06),
            _row("cdrl", "8gaussians_x100", 0, diverged=True)]
    text = scale.render(summarize([r for r in runs if r["seed"] == 0]), _references(scale), runs, _header())
    assert "**3 of 100 cells finished.**" in text
    assert _cells(text, "| drl | 25gaussians |")[2:5] == ["0.020", "not run yet", "not run yet"]  # SW/σ of seed 0
    assert _cells(text, "| cdrl | 8gaussians |")[4] == "**diverged** (1/1)"  # the ×100 cell
    assert _cells(text, "| drl | 0: ")[1:3] == ["0: 0.040, 1: 0.060", "—"]  # two of three seeds: no mean yet

    runs.append(_row("drl", "25gaussians", 2, 0.08))
    text = scale.render(summarize([r for r in runs if r["seed"] == 0]), _references(scale), runs, _header())
    assert _cells(text, "| drl | 0: ")[2:5] == ["0.060", "0.050", "0.075"]  # mean, floor, 1.5 × floor


def test_restore_writes_back_recorded_cells_and_keeps_existing_ones(scale, tmp_path, monkeypatch):
    record = tmp_path / "scale.json"
    cells = {"drl-8gaussians-s0": {"recipe": {"a": 1}, "row": _row("drl", "8gaussians", 0, 0.04)},
             "cdrl-8gaussians-s0": {"recipe": {"a": 2}, "row": _row("cdrl", "8gaussians", 0, 0.05)}}
    record.write_text(json.dumps({"cells": cells}))
    monkeypatch.setattr(scale, "RECORD", record)
    out = tmp_path / "out"
    kept = out / "runs" / "cdrl-8gaussians-s0" / "cell.json"
    kept.parent.mkdir(parents=True)
    kept.write_text('{"recipe": {"a": 3}, "row": {}}')  # trained here since: never overwritten
    assert scale.restore_cells(out) == 1
    assert json.loads((out / "runs" / "drl-8gaussians-s0" / "cell.json").read_text()) == cells["drl-8gaussians-s0"]
    assert json.loads(kept.read_text())["recipe"] == {"a": 3}
    monkeypatch.setattr(scale, "RECORD", tmp_path / "absent.json")
    assert scale.restore_cells(out) == 0


def test_record_names_no_folder_of_the_machine_that_wrote_it(scale, tmp_path, monkeypatch):
    """scale.json writes --out as `$OUT`; restoring into another --out puts that folder's path back,
    so the recipes' data paths resolve there."""
    monkeypatch.setattr(scale, "HERE", tmp_path)
    monkeypatch.setattr(scale, "RECORD", tmp_path / "scale.json")
    monkeypatch.setattr(scale, "render", lambda *args: "")  # the table is tested above; here the record
    wrote = tmp_path / "machine-a" / "bench"
    cell = {"recipe": {"data": {"path": str(wrote / "data" / "8gaussians_x100.npy")}},
            "row": _row("drl", "8gaussians", 0, 0.04)}
    (wrote / "runs" / "drl-8gaussians-s0").mkdir(parents=True)
    (wrote / "runs" / "drl-8gaussians-s0" / "cell.json").write_text(json.dumps(cell))
    scale.write_table(wrote, ["8gaussians"], 1, 1.0)
    text = (tmp_path / "scale.json").read_text()
    assert str(wrote) not in text and '"$OUT/data/8gaussians_x100.npy"' in text
    other = tmp_path / "machine-b"
    assert scale.restore_cells(other) == 1
    restored = json.loads((other / "runs" / "drl-8gaussians-s0" / "cell.json").read_text())
    assert restored["recipe"]["data"]["path"] == str(other / "data" / "8gaussians_x100.npy")
