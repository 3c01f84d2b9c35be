"""Experiment tracking (issue 31): the loggers' files, read back with each library's own reader.

One run logs to all four loggers: it rolls back once (a NaN at step 6, back to step 4), is
killed with SIGKILL after logging steps 9–12 but before their checkpoint, and is resumed to
step 16. stats.jsonl then holds steps 1–16 once each, and so must TensorBoard (its
EventAccumulator), MLflow (MlflowClient on the local store) and W&B (the offline run's .wandb
files, decoded with W&B's own protobuf): the same scalars step by step, the pictures, the
rollback, and no step of the abandoned work.
"""

import json
import os
import signal
import struct
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from ebmkit import Recipe
from ebmkit.training import Trainer, TrainingError
from helpers import assert_one_line_error

TRACKERS = [name for name in ("tensorboard", "mlflow", "wandb") if find_spec(name) is not None]
CHANGES = {"network.width": 16, "network.depth": 1, "sampler.n_steps": 3, "train.batch_size": 32, "train.steps": 16,
           "train.log_every": 1, "train.checkpoint_every": 4, "train.eval_every": 8, "train.eval_samples": 64,
           "train.threads": 1, "train.on_divergence": "rollback", "train.loggers": ["jsonl", *TRACKERS]}
# W&B writes its file every 15 s by default, and a SIGKILL loses what it has not written
# (ebmkit/loggers/wandb.py): here every 0.1 s, and the killed process lives 1 s past its last delivery.
ENV = {"EBMKIT_NO_PLUGINS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_TRACKING_URI": "",
       "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "0.1"}

# In a process of its own: the energy loss is NaN at the 6th call (a rollback from step 6 to 4), and
# the process kills itself when it is about to save step 12's checkpoint, with steps 9–12 logged.
KILLED_RUN = """
import json, os, signal, sys, time
from ebmkit import Recipe
from ebmkit.divergences.recovery_likelihood import RecoveryLikelihood
from ebmkit.training import Trainer

loss, calls = RecoveryLikelihood.energy_loss, [0]
def energy_loss(self, *args):
    out = loss(self, *args)
    calls[0] += 1
    if calls[0] == 6:
        out.loss = out.loss * float("nan")
    return out
RecoveryLikelihood.energy_loss = energy_loss

save = Trainer._save
def _save(self):
    if self.step == 12:
        time.sleep(1)  # W&B's writer, every 0.1 s here
        os.kill(os.getpid(), signal.SIGKILL)
    save(self)
Trainer._save = _save
Trainer(Recipe.from_name("drl").override(json.loads(sys.argv[2])), sys.argv[1], progress=False).fit()
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The run directory of the rolled-back, killed and resumed run."""
    run = tmp_path_factory.mktemp("tracking") / "run"
    env = {**os.environ, **ENV, "PYTHONUNBUFFERED": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(run), json.dumps(CHANGES)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    logged = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 13)), logged  # steps 9–12 logged; the checkpoint holds step 8
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 8
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        recipe = Recipe.load(run / "config.json")
        Trainer(recipe, run, resume=True, progress=False).fit()
    return run


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _columns(run: Path) -> dict[str, list[tuple[int, float]]]:
    """stats.jsonl as (step, value) per key."""
    columns = {}
    for row in _rows(run):
        for key, value in row.items():
            if key != "step":
                columns.setdefault(key, []).append((row["step"], value))
    return columns


def test_every_step_is_logged_once_with_what_every_recipe_reports(run):
    rows = _rows(run)
    assert [row["step"] for row in rows] == list(range(1, 17))
    for row in rows:
        assert {"loss", "e_pos", "e_neg", "e_gap", "grad_norm", "chain_move", "lr", "time", "samples_per_s"} <= set(row)
        assert row["e_gap"] == pytest.approx(row["e_neg"] - row["e_pos"], rel=1e-5, abs=1e-6)
        assert row["samples_per_s"] > 0
    assert [row["step"] for row in rows if "sw" in row] == [8, 16]
    (record,) = [json.loads(line) for line in (run / "rollbacks.jsonl").read_text().splitlines()]
    assert record["diverged_at"] == 6 and record["restarted_from"] == 4


def test_tensorboard_holds_the_same_scalars_pictures_and_recipe(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 3  # new, rollback, resume
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()  # honours the restart events: what was logged after step 4, then after 8, is purged
    for key, expected in _columns(run).items():
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in expected], key  # each step once
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), key  # float32
    assert [(e.step, e.value) for e in events.Scalars("rollbacks")] == [(4, 1.0)]
    assert [e.step for e in events.Images("density")] == [16]
    density = events.Images("density")[0]
    assert density.encoded_image_string.startswith(b"\x89PNG") and density.width > 100
    assert "recipe/text_summary" in events.Tags()["tensors"]
    assert "train:\n" in events.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_mlflow_holds_the_same_metrics_in_one_run_with_its_pictures(run):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    state = json.loads((run / "loggers.json").read_text())["mlflow"]
    assert state["tracking_uri"] == f"sqlite:///{run.parent / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    (only,) = client.search_runs([client.get_experiment_by_name("ebmkit").experiment_id])  # resumed, not a new one
    assert only.info.run_id == state["run_id"] and only.info.status == "FINISHED"
    for key, expected in _columns(run).items():
        got = [(m.step, m.value) for m in client.get_metric_history(state["run_id"], key)]
        assert sorted(got) == expected, key  # each step once, float64
    assert [(m.step, m.value) for m in client.get_metric_history(state["run_id"], "rollbacks")] == [(4, 1.0)]
    assert "became non-finite at step 6" in only.data.tags["rollback.1"]
    assert only.data.params["train.steps"] == "16" and only.data.params["sampler.name"] == "langevin"
    images = [a.path for a in client.list_artifacts(state["run_id"], "images")]
    assert any(p.startswith("images/density+step+16+") and p.endswith(".png") for p in images), images
    recipe = client.download_artifacts(state["run_id"], "recipe.yaml", str(run.parent))
    assert "train:" in Path(recipe).read_text()


def wandb_records(path: Path):
    """The records of a W&B transaction log (``run-ID.wandb``), decoded with W&B's own protobuf
    (``wandb.proto.wandb_internal_pb2.Record``). W&B 0.31 has no Python reader of its own (its
    ``wandb.sdk.internal.datastore`` went with the move to wandb-core); the framing is LevelDB's
    log: 32 KiB blocks of records, each a 7-byte header (CRC-32C, length, type: 1 full, 2 first,
    3 middle, 4 last) and its bytes, after W&B's 7-byte file header."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = path.read_bytes(), 32768
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), "not a W&B transaction log"
    pos, parts = 7, []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def test_wandb_offline_files_hold_the_same_history_once(run):
    pytest.importorskip("wandb")
    state = json.loads((run / "loggers.json").read_text())["wandb"]
    files = sorted((run / "wandb").glob(f"offline-run-*-{state['id']}/run-{state['id']}.wandb"))
    assert len(files) == 2  # the killed process's and the resumed one's, one run id
    history = []
    for path in files:
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item}
                history.append((record.history.step.num, items))
    steps = [step for step, _ in history]
    assert steps == list(range(1, 17)), steps  # each step once, across both files
    by_step = dict(history)
    for key, expected in _columns(run).items():
        assert [(s, by_step[s][key]) for s, _ in expected] == pytest.approx(expected), key
    assert by_step[4]["rollbacks"] == 1
    assert by_step[16]["density/_type"] == "image-file"  # W&B keeps a picture's fields as nested keys
    assert (files[-1].parent / "files" / by_step[16]["density/path"]).is_file()


def test_runs_lists_and_compares_runs(run, tmp_path):
    other = tmp_path / "other"
    Trainer(Recipe.from_name("drl").override({**CHANGES, "train.steps": 6, "sampler.n_steps": 2,
                                              "train.on_divergence": "stop", "train.loggers": ["jsonl"]}),
            other, progress=False).fit()
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1", "COLUMNS": "200"}
    listed = subprocess.run([sys.executable, "-m", "ebmkit", "runs", str(run), str(other)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert "16/16" in lines[str(run)] and "sw" in lines[str(run)] and "tensorboard" in lines[str(run)]
    assert "6/6" in lines[str(other)] and "drl" in lines[str(other)] and "8gaussians" in lines[str(other)]
    picture = tmp_path / "compare.png"
    compared = subprocess.run([sys.executable, "-m", "ebmkit", "runs", "--compare", str(run), str(other), "-o",
                               str(picture)], capture_output=True, text=True, env=env, timeout=300)
    assert compared.returncode == 0, compared.stderr
    differing = {line.split("│")[1].strip() for line in compared.stdout.split("last values")[0].splitlines()
                 if "│" in line}
    assert {"sampler.n_steps", "train.steps", "train.on_divergence", "train.loggers"} <= differing
    assert "train.lr" not in differing
    assert f"wrote {picture}" in compared.stderr
    from PIL import Image

    assert Image.open(picture).size[0] > 1000  # one panel per metric, 4 across
    assert_one_line_error(subprocess.run([sys.executable, "-m", "ebmkit", "runs", "--compare", str(run)],
                                         capture_output=True, text=True, env=env, timeout=300),
                          "--compare takes two or more runs")


# -- what is refused --------------------------------------------------------------------
BLOCKED = "import sys; sys.modules[{module!r}] = None; from ebmkit.cli import main; sys.argv[0] = 'ebmkit'; main()"


def test_a_logger_whose_package_is_missing_is_refused_in_one_line_naming_the_extra(tmp_path):
    env = {**os.environ, "EBMKIT_NO_PLUGINS": "1"}
    result = subprocess.run([sys.executable, "-c", BLOCKED.format(module="tensorboard"), "train", "--log",
                             "tensorboard", "--steps", "2", "--out", str(tmp_path / "run")], capture_output=True,
                            text=True, env=env, timeout=300)
    assert_one_line_error(result, "logger 'tensorboard' needs the package 'tensorboard'",
                          'pip install "torch-ebmkit[tensorboard]"')
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb"])
def test_the_trainer_refuses_a_missing_package_before_any_work(name, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    recipe = Recipe.from_name("drl").override({"train.loggers": ["jsonl", name]})
    with pytest.raises(TrainingError, match=rf"logger '{name}' needs the package '{name}', which is not installed: "
                                            rf'pip install "torch-ebmkit\[{name}\]"'):
        Trainer(recipe, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_loggers_are_chosen_by_set_or_log_and_checked_like_components():
    from typer.testing import CliRunner

    from ebmkit.cli import app, parse_value

    assert parse_value("[tensorboard,jsonl]") == ["tensorboard", "jsonl"]
    assert parse_value("[1, 2.5]") == [1, 2.5] and parse_value("[a") == "[a"
    dry = CliRunner().invoke(app, ["train", "--set", "train.loggers=[tensorboard,jsonl]", "--log", "mlflow,jsonl",
                                   "--dry-run"])
    assert json.loads(dry.output)["train"]["loggers"] == [{"name": "tensorboard"}, {"name": "jsonl"},
                                                          {"name": "mlflow", "experiment": "ebmkit"}]
    with pytest.raises(Exception, match=r"train.loggers: unknown logger 'tensorbord'; available: jsonl, mlflow, "
                                        r"tensorboard, wandb"):
        Recipe.from_name("drl").override({"train.loggers": ["tensorbord"]})
    listed = CliRunner().invoke(app, ["list", "loggers"]).output
    for name in ("jsonl", "tensorboard", "mlflow", "wandb"):
        assert name in listed


PLUGIN_LOGGER = """
import json
from ebmkit.loggers import Logger

class Lines(Logger):
    '''Each row as a line of lines.txt (a test plugin).'''
    rewinds = False
    def start(self, run):
        self.file = open(self.run_dir / "lines.txt", "a")
    def log(self, row, wall_time):
        self.file.write(json.dumps(row) + "\\n")
    def close(self, status):
        self.file.write(status + "\\n")
        self.file.close()
"""


def test_a_plugin_adds_a_logger_through_its_entry_point_group(tmp_path, monkeypatch):
    from test_registry import _install_fake_dist

    from ebmkit.registry import LOGGERS, refresh_plugins

    plugins = tmp_path / "site"
    plugins.mkdir()
    _install_fake_dist(plugins, "fake-lines", {"ebmkit.loggers": {"lines": "fakeplug_lines:Lines"}}, "fakeplug_lines",
                       PLUGIN_LOGGER)
    monkeypatch.delenv("EBMKIT_NO_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(plugins))
    refresh_plugins()
    try:
        assert LOGGERS.get("lines").source == "fake-lines"
        recipe = Recipe.from_name("drl").override({**CHANGES, "train.steps": 3, "train.on_divergence": "stop",
                                                   "train.loggers": ["lines"]})
        Trainer(recipe, tmp_path / "run", progress=False).fit()
    finally:
        refresh_plugins()
        sys.modules.pop("fakeplug_lines", None)
    lines = (tmp_path / "run" / "lines.txt").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines[:-1]] == [1, 2, 3] and lines[-1] == "finished"
    assert not (tmp_path / "run" / "stats.jsonl").exists()  # the list is exact: no jsonl, no stats.jsonl


# -- what every recipe logs -------------------------------------------------------------
@pytest.mark.parametrize("preset", ["drl", "ddaebm", "dxmi"])
def test_energy_losses_log_the_energies_of_positives_and_negatives_and_their_gap(preset):
    from ebmkit.model import EnergyModel

    model = EnergyModel(Recipe.from_name(preset), (2,))
    g = torch.Generator().manual_seed(0)
    batch = model.divergence.training_batch(torch.randn(64, 2, generator=g), generator=g)
    negatives = torch.randn(64, 2, generator=g)
    metrics = model.divergence.energy_loss(batch, negatives, model.energy).metrics
    with torch.no_grad():
        e_pos = model.energy(batch.positives, batch.level).mean()
        e_neg = model.energy(negatives, batch.level).mean()
    assert float(metrics["e_pos"]) == pytest.approx(float(e_pos), rel=1e-5, abs=1e-6)
    assert float(metrics["e_neg"]) == pytest.approx(float(e_neg), rel=1e-5, abs=1e-6)
    assert float(metrics["e_gap"]) == pytest.approx(float(e_neg - e_pos), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("preset", ["drl", "cdrl"])
def test_langevin_chains_report_how_far_they_moved(preset):
    from ebmkit.model import EnergyModel

    model = EnergyModel(Recipe.from_name(preset), (2,))
    g = torch.Generator().manual_seed(0)
    batch = model.divergence.training_batch(torch.randn(64, 2, generator=g), generator=g)
    record = model.sampler.record(batch, model.energy, generator=torch.Generator().manual_seed(1))
    start = batch.condition if preset == "drl" else record.saved["proposal"].detach()
    expected = (record.negatives - start).norm(dim=1).mean()
    assert float(record.metrics["chain_move"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) > 0
