"""The user guide and the examples run as written.

- docs/quickstart.md and docs/assemble.md: every ```bash block (through ``bash -e``) and every
  ```python block (``python -c``), in order, in one empty folder, as a user would type them. One
  rewrite, made here in plain sight: the `pip install` lines are dropped, since the package is
  already installed. Then the state the commands leave is checked, not only their exit codes.
- docs/assemble.md's ```console blocks: each `$ ebmkit ...` refusal prints exactly the line shown.
- examples/*.py with --fast: what each prints and writes, and the Hub round trip of
  hub_push_pull.py against the local fake Hub of test_hub.py (nothing reaches the network).
"""

import http.client
import json
import math
import os
import re
import shlex
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from hub_upload_server import git
from test_hub import TOKEN, hub  # noqa: F401  (the fake Hub's fixture, module-scoped)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BLOCK = re.compile(r"^```(bash|python|console)\n(.*?)^```$", re.M | re.S)
PIP_INSTALL = re.compile(r"^pip install .*\n", re.M)


def environment() -> dict:
    return {
        **os.environ,
        # `ebmkit` and `python` in a block are this interpreter's, whether or not its environment is activated
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "OMP_NUM_THREADS": "1",  # the CI machine is shared: one thread each, as conftest.py does in-process
        "HF_HUB_OFFLINE": "1",  # no block may reach the network
        "COLUMNS": "200",
    }


def doc_blocks(name: str, *languages: str) -> list[tuple[str, str]]:
    return [(lang, code) for lang, code in BLOCK.findall((ROOT / "docs" / name).read_text()) if lang in languages]


def run_block(language: str, code: str, cwd: Path) -> str:
    """One block as a user runs it; returns what it printed on stdout."""
    argv = ["bash", "-e", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    result = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"```{language} block failed:\n{code}\n--- stderr:\n{result.stderr[-3000:]}"
    return result.stdout


def run_doc(name: str, cwd: Path) -> list[str]:
    outputs = []
    for language, code in doc_blocks(name, "bash", "python"):
        if language == "bash":
            code = PIP_INSTALL.sub("", code)  # the one rewrite: the package is installed already
        outputs.append(run_block(language, code, cwd))
    return outputs


def json_objects(text: str) -> list:
    """The JSON documents printed one after another (one per `--dry-run`)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        obj, at = decoder.raw_decode(text, at)
        found.append(obj)
    return found


def test_quickstart_runs_as_written(tmp_path):
    blocks = doc_blocks("quickstart.md", "bash", "python")
    assert [lang for lang, _ in blocks].count("python") >= 2
    assert len(PIP_INSTALL.findall("".join(code for lang, code in blocks if lang == "bash"))) == 1
    outputs = run_doc("quickstart.md", tmp_path)

    run = tmp_path / "runs" / "ddaebm-8g"
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["name"] == "ddaebm" and config["recipe"]["data"]["name"] == "8gaussians"
    assert config["recipe"]["train"]["steps"] == 250  # the resume's new total
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 250
    assert json.loads((run / "stats.jsonl").read_text().splitlines()[-1])["step"] == 250
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["n_samples"] == 1000 and 0 <= evaluated["energy_auc"] <= 1 and math.isfinite(evaluated["sw"])
    assert np.load(tmp_path / "samples.npy").shape == (1000, 2)
    assert Image.open(tmp_path / "samples.png").format == "PNG"
    assert Image.open(run / "density.png").format == "PNG"
    text = "".join(outputs)
    assert "(1000, 2)" in text
    assert "torch.Size([1000, 2]) torch.Size([1000])" in text
    assert (tmp_path / "runs" / "ddaebm-python" / "model.safetensors").is_file()
    metrics = outputs[-1]  # the last block: EnergyModel.from_run + evaluate
    assert "'sw':" in metrics and "'energy_auc':" in metrics and "'grid_log_likelihood':" in metrics


def test_assemble_runs_as_written(tmp_path):
    outputs = run_doc("assemble.md", tmp_path)
    text = "".join(outputs)
    assert "n_steps = 30" in text and "'name': 'cooperative'" in text  # the options listing
    assert "10 0.0003 {'name': 'checkerboard'}" in text  # override
    dry_runs = [obj for out in outputs if out.lstrip().startswith("{") for obj in json_objects(out)]
    assert {"name": "kl"}.items() <= dry_runs[-2]["divergence"].items()
    assert dry_runs[-1]["sampler"]["name"] == "cooperative" and dry_runs[-1]["sampler"]["refine"]["n_steps"] == 5
    from_file = json.loads((tmp_path / "runs" / "drl-logsnr" / "config.json").read_text())["recipe"]
    assert from_file["schedule"]["name"] == "cosine_logsnr" and from_file["train"]["steps"] == 50
    assert from_file["train"]["batch_size"] == 512  # a default the file left out
    assert "name: drl_logsnr torch.Size([5, 2])" in text  # Recipe.create + fit


REFUSALS = [(line[2:], shown) for _, code in doc_blocks("assemble.md", "console")
            for line, shown in zip(code.splitlines(), code.splitlines()[1:]) if line.startswith("$ ")]


@pytest.mark.parametrize("command,expected", REFUSALS, ids=[command[7:] for command, _ in REFUSALS])
def test_assemble_refusals_print_what_the_page_shows(command, expected, tmp_path, monkeypatch, capsys):
    """In process (the refusals come before any training): the CLI's own entry point and output."""
    from ebmkit.cli import main

    argv = shlex.split(command)
    assert argv[0] == "ebmkit" and not expected.startswith("$ ")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "runs").exists()  # refused before the run directory is written


# -- examples/ ------------------------------------------------------------------------------------
def example(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), "--fast", *args], cwd=cwd,
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
    return result.stdout


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"no match for {pattern!r} in:\n{text}"
    return float(found.group(1))


def test_examples_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts and all(f"]({name})" in readme for name in scripts)
    assert all("--fast" in (EXAMPLES / name).read_text() for name in scripts)


def test_train_2d_density(tmp_path):
    out = example("train_2d_density.py", cwd=tmp_path)
    assert 0 <= number(r"energy AUC ([\d.]+)", out) <= 1
    picture = Image.open(tmp_path / "runs" / "train_2d_density" / "learned.png")
    assert picture.format == "PNG" and picture.size == (960, 336)  # 12 × 4.2 in at 80 dpi: three panels
    assert (tmp_path / "runs" / "train_2d_density" / "model.safetensors").is_file()


def test_swap_sampler(tmp_path):
    out = example("swap_sampler.py", cwd=tmp_path)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[0] in ("langevin", "cooperative")}
    assert set(rows) == {"langevin", "cooperative"}
    for _, k, ms, sw, auc, _ in rows.values():
        assert k == "2" and float(ms) > 0 and math.isfinite(float(sw)) and 0 <= float(auc) <= 1
    assert int(rows["langevin"][5]) == 0 < int(rows["cooperative"][5])  # the initializer's parameters
    # the swap changed the sampler alone, and the cooperative chain is DRL's Langevin spec
    recipes = {name: json.loads((tmp_path / "runs" / "swap_sampler" / name / "config.json").read_text())["recipe"]
               for name in rows}
    assert recipes["cooperative"]["sampler"]["refine"] == recipes["langevin"]["sampler"]
    for field in ("data", "schedule", "network", "energy", "divergence", "train"):
        assert recipes["cooperative"][field] == recipes["langevin"][field], field


def test_ood_scoring(tmp_path):
    out = example("ood_scoring.py", cwd=tmp_path)
    rows = re.findall(r"^(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%$", out, re.M)
    assert [name.strip() for name, *_ in rows] == [
        "uniform noise on the box", "held-out data rotated 22.5°", "data set 'rings'"]
    for _, auroc, best, flagged in rows:
        assert 0 <= float(auroc) <= 1 and 0.8 < float(best) <= 1 and 0 <= float(flagged) <= 100
    assert 0.85 < float(rows[0][2]) < 0.95  # 8gaussians' true energy AUC is about 0.90


def test_plugin_sampler(tmp_path):
    out = example("plugin_sampler.py", cwd=tmp_path)
    assert out.startswith("registered: mala (")
    assert 0 < number(r"MH acceptance at the last level: ([\d.]+)%", out) <= 100
    assert math.isfinite(number(r"sliced Wasserstein ([\d.]+)", out))
    config = json.loads((tmp_path / "runs" / "plugin_sampler" / "config.json").read_text())
    assert config["recipe"]["sampler"]["name"] == "mala"
    assert config["recipe"]["sampler"]["n_steps"] == 2  # the name changed, DRL's langevin options stayed


# -- hub_push_pull.py --repo, against test_hub.py's fake Hub ------------------------------------------
class HubFront(ThreadingHTTPServer):
    """One HF_ENDPOINT for both halves of test_hub.py's fake Hub, as the real Hub is one: writes
    (POST) go to the upload server, reads (GET, HEAD) to olah; status, headers and body relayed."""

    daemon_threads = True

    def __init__(self, upload_url: str, olah_url: str):
        super().__init__(("127.0.0.1", 0), Relay)
        self.backends = {"POST": urlparse(upload_url).netloc, "GET": urlparse(olah_url).netloc}
        self.backends["HEAD"] = self.backends["GET"]
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Relay(BaseHTTPRequestHandler):
    HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "content-length")  # set again below

    def log_message(self, *args):
        pass

    def relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        backend = http.client.HTTPConnection(self.server.backends[self.command], timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        backend.request(self.command, self.path, body=body or None, headers=headers)
        response = backend.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in self.HOP_BY_HOP:
                self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        backend.close()

    do_GET = do_HEAD = do_POST = relay  # http.server's names


@pytest.fixture(scope="module")
def fake_hub(request):
    pytest.importorskip("olah")  # a dev extra, as for test_hub.py
    servers = request.getfixturevalue("hub")  # test_hub.py's olah + upload server, imported above
    front = HubFront(servers["upload"].url, servers["olah"])
    Thread(target=front.serve_forever, daemon=True).start()
    yield {**servers, "url": front.url}
    front.shutdown()
    front.server_close()


def test_hub_push_pull(tmp_path, request):
    """The default round trip through a local folder; then --repo, with the run that trained,
    through test_hub.py's fake Hub: the push lands in its git repo, the pull gives the same model."""
    out = example("hub_push_pull.py", cwd=tmp_path)
    assert "same weights: True; same samples from the same seed: True" in out
    folder = tmp_path / "runs" / "hub_push_pull" / "pushed"
    assert {p.name for p in folder.iterdir()} == {"README.md", "config.json", "density.png", "model.safetensors"}

    pytest.importorskip("olah")  # a dev extra, as for test_hub.py
    fake = request.getfixturevalue("fake_hub")
    env = {k: v for k, v in environment().items() if not k.startswith("HF_")}  # not offline, this time
    env.update({"HF_ENDPOINT": fake["url"], "HF_TOKEN": TOKEN, "HF_HOME": str(fake["hf_home"]),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    result = subprocess.run([sys.executable, str(EXAMPLES / "hub_push_pull.py"), "--run", "runs/hub_push_pull/run",
                             "--repo", "alice/example"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    commit = re.search(r"pushed alice/example at commit ([0-9a-f]{40})", result.stdout)
    assert commit, result.stdout
    assert git(fake["mirrors"] / "models" / "alice" / "example", "rev-parse", "main") == commit.group(1)
    assert "same weights: True; same samples from the same seed: True" in result.stdout
