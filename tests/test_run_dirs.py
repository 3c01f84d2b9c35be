"""Run directories are safe: one writer at a time, race-free numbering, --overwrite only on a run
and only of a run's files, checksummed exports checked against their config, Ctrl-C says how to
go on; each refusal is one line and loses nothing."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ebmkit import Recipe
from ebmkit.model import EnergyModel
from ebmkit.training import CheckpointError, RunDirectoryError, Trainer
from ebmkit.training import rundir
from helpers import assert_one_line_error
from test_cli import run

TINY = {"network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 4,
        "train.threads": 1}
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    Trainer(Recipe.from_name("drl").override(TINY), run_dir, progress=False).fit()
    return run_dir


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def saved_step(out: Path) -> int | None:
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return None  # not written yet, or being swapped in


def start_training(out: Path, steps: int, *extra, saved: int = 0) -> subprocess.Popen:
    """A long CLI training run in the background, once it has saved the checkpoint of step ``saved``."""
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "COLUMNS": "80"}
    sets = [a for k, v in {**TINY, "train.steps": steps, "train.checkpoint_every": 20}.items()
            for a in ("--set", f"{k}={v}")]
    # SIGINT back to its default in the child: a suite started in the background by a non-interactive
    # shell inherits it ignored, and Python then installs no KeyboardInterrupt for it
    proc = subprocess.Popen([sys.executable, "-m", "ebmkit", "train", "--no-progress", "--out", str(out), *sets,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while (saved_step(out) or 0) < saved or saved_step(out) is None:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    return proc


def test_a_second_writer_is_refused_and_the_first_run_is_untouched(tmp_path):
    out = tmp_path / "run"
    first = start_training(out, 4000)
    try:
        r = run("train", "--out", str(out), *SETS, "--seed", "7", "--overwrite")
        assert_one_line_error(r, f"run directory '{out}' is in use by another ebmkit process (pid {first.pid})")
        r = run("train", "--resume", str(out))
        assert_one_line_error(r, "is in use by another ebmkit process")
        r = run("train", "--out", str(out), *SETS)  # no flag: it exists
        assert_one_line_error(r, "already exists", "--resume", "--overwrite")
        assert first.poll() is None  # all three while the first was still training
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["train"]["seed"] == 0
    steps = [json.loads(line)["step"] for line in (out / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # each step once


def test_a_lock_left_by_a_dead_process_is_free(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK).write_text("99999999")  # the file remains, the kernel's lock died with its holder
    Trainer(Recipe.from_name("drl").override(TINY), out, progress=False).fit()
    assert (out / "model.safetensors").is_file()


def test_a_held_lock_refuses_the_trainer_before_any_work(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    lock = rundir.Lock(out).acquire()
    try:
        with pytest.raises(RunDirectoryError, match=f"is in use by another ebmkit process \\(pid {os.getpid()}\\)"):
            Trainer(Recipe.from_name("drl").override(TINY), out, progress=False).fit()
    finally:
        lock.release()
    assert [p.name for p in out.iterdir()] == [rundir.LOCK]


def _take_number(root, barrier, queue):
    barrier.wait()
    queue.put(str(rundir.numbered(Path(root), "drl-8gaussians")[0]))


def test_automatic_numbering_gives_every_concurrent_run_its_own_folder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_take_number, args=(tmp_path, barrier, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    names = sorted(Path(queue.get(timeout=5)).name for _ in procs)
    assert names == [f"{i:03d}-drl-8gaussians" for i in range(6)]


def test_two_runs_without_out_take_two_folders(tmp_path):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "ebmkit", "train", "--no-progress", *SETS, "--seed", str(seed)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (0, 7)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name for f in folders] == ["000-drl-8gaussians", "001-drl-8gaussians"]
    seeds = sorted(json.loads((f / "config.json").read_text())["recipe"]["train"]["seed"] for f in folders)
    assert seeds == [0, 7]


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_deletes_nothing(tmp_path):
    mine = tmp_path / "mine"
    (mine / "samples").mkdir(parents=True)
    files = {"eval.json": "{}", "density.png": "my picture", "samples/step_000001.png": "mine too"}
    for name, text in files.items():
        (mine / name).write_text(text)
    r = run("train", "--out", str(mine), "--overwrite", *SETS)
    assert_one_line_error(r, "--overwrite", "is not an ebmkit run", "nothing in it is deleted")
    assert {str(p.relative_to(mine)): p.read_text() for p in mine.rglob("*") if p.is_file()} == files


def test_overwrite_of_a_run_removes_only_what_a_run_writes(tmp_path, trained):
    out = tmp_path / "run"
    out.mkdir()
    for p in trained.rglob("*"):
        if p.is_file():
            (out / p.relative_to(trained)).parent.mkdir(parents=True, exist_ok=True)
            (out / p.relative_to(trained)).write_bytes(p.read_bytes())
    (out / "samples").mkdir()
    (out / "samples" / "step_000002.png").write_text("an old grid")
    (out / "samples" / "picked.png").write_text("the user's")
    (out / "notes.txt").write_text("the user's")
    (out / "eval.json").write_text("{}")
    (out / "rollbacks.jsonl").write_text('{"old": 1}\n')
    Trainer(Recipe.from_name("drl").override({**TINY, "train.seed": 3}), out, overwrite=True, progress=False).fit()
    assert (out / "notes.txt").read_text() == "the user's"
    assert [p.name for p in (out / "samples").iterdir()] == ["picked.png"]
    assert not (out / "eval.json").exists() and not (out / "rollbacks.jsonl").exists()
    assert json.loads((out / "config.json").read_text())["recipe"]["train"]["seed"] == 3


def test_a_failed_start_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new" / "run"
    r = run("train", "--out", str(out), "--data", str(tmp_path / "absent.npy"), *SETS)
    assert_one_line_error(r, "absent.npy", "not found")
    assert not (tmp_path / "new").exists()
    r = run("train", "--data", str(tmp_path / "absent.npy"), *SETS, cwd=tmp_path)  # runs/NNN-… too
    assert_one_line_error(r, "absent.npy", "not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("weights", ["model.safetensors", "best.safetensors"])
def test_a_flipped_byte_in_an_export_is_detected(tmp_path, trained, weights):
    out = copy_run(trained, tmp_path / "run")
    if weights == "best.safetensors":
        (out / weights).write_bytes((trained / "model.safetensors").read_bytes())
    data = bytearray((out / weights).read_bytes())
    data[-5] ^= 0x01  # a bit of the last tensor's bytes
    (out / weights).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt: its content does not match the checksum"):
        EnergyModel.from_run(out, weights)
    assert_one_line_error(run("sample", str(out), "--weights", weights, "-o", str(tmp_path / "s.npy")),
                          weights, "is corrupt")
    assert not (tmp_path / "s.npy").exists()


def test_a_config_edited_away_from_its_weights_is_refused(tmp_path, trained):
    out = copy_run(trained, tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    config["recipe"]["schedule"]["num_levels"] = 5  # the sinusoidal-embedding MLP's weights fit any T
    (out / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run("sample", str(out), "-o", str(tmp_path / "s.npy")),
                          "does not match the weights", "schedule.num_levels differ", "was config.json edited?")


def test_a_config_from_a_newer_ebmkit_loads_with_a_warning(tmp_path, trained):
    out = copy_run(trained, tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    config["ebmkit_version"] = "99.0.0"
    (out / "config.json").write_text(json.dumps(config))
    r = run("sample", str(out), "-n", "10", "-o", str(tmp_path / "s.npy"))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "written by ebmkit 99.0.0, newer than this ebmkit" in warnings[0]


def test_ctrl_c_says_which_checkpoint_is_kept_and_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = start_training(out, 100_000, saved=20)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    (line,) = [line for line in stderr.splitlines() if "interrupted" in line]
    step = json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    assert step >= 20
    assert f"the checkpoint of step {step} is kept in {out / 'checkpoint'}" in line
    assert line.endswith(f"continue with: ebmkit train --resume {out}")
    r = run("train", "--resume", str(out), "--steps", str(step + 2))
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").is_file()


def test_export_checksums_cover_the_tensors_and_their_metadata(tmp_path):
    from ebmkit.training.checkpoint import read_tensors, save_tensors

    save_tensors({"a": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}, tmp_path / "x.safetensors",
                 {"ebmkit.model": "{}"})
    clean = (tmp_path / "x.safetensors").read_bytes()
    tensors, metadata = read_tensors(tmp_path / "x.safetensors")
    assert metadata == {"ebmkit.model": "{}"} and torch.equal(tensors["a"], torch.arange(6.0).reshape(2, 3))
    for position in range(len(clean)):  # every byte, header included: nothing flips unnoticed
        data = bytearray(clean)
        data[position] ^= 0x04
        (tmp_path / "y.safetensors").write_bytes(bytes(data))
        with pytest.raises(CheckpointError):
            read_tensors(tmp_path / "y.safetensors")
