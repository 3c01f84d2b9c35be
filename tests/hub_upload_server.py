"""The Hub's write API, small enough to read: the part of the Hub these tests fake.

No installable server accepts uploads in the Hub's API, so this one implements the five calls
huggingface_hub's ``create_repo``, ``create_branch`` and ``upload_folder`` make, and stores each
repo as a git repository that `olah` (the real download-API server of the pull tests) serves:

    POST /api/repos/create                         make <root>/models/<org>/<name>, one commit with .gitattributes
    POST /api/validate-yaml                        README front matter: parses as a YAML mapping
    POST /api/models/<org>/<name>/branch/<b>       a branch at main (or at "startingPoint")
    POST /api/models/<org>/<name>/preupload/<rev>  every file "regular" (no LFS / Xet storage)
    POST /api/models/<org>/<name>/commit/<rev>     NDJSON: header, file (base64), deletedFile

Reads (GET, HEAD) are forwarded to ``download_url`` when it is set (olah in the tests), so one
endpoint serves a client that reads and writes, as the Hub does (`ebmkit hub publish-zoo` reads a
card before pushing).

Differences from the real Hub, on purpose: every file is committed inline ("regular"), where the
Hub would ask for LFS/Xet uploads of the safetensors; no no-op detection (preupload returns no
remote oid); the README's YAML is only parsed, not checked against the Hub's metadata schema;
authorization is one fixed token; ``private`` is recorded but nothing is hidden.
"""

from __future__ import annotations

import base64
import socket
import sys
import time
from contextlib import contextmanager
import json
import os
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git(repo: Path, *args: str, stdin: bytes | None = None, env: dict | None = None) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, check=True,
                            env={**os.environ, "GIT_AUTHOR_NAME": "hub", "GIT_AUTHOR_EMAIL": "hub@localhost",
                                 "GIT_COMMITTER_NAME": "hub", "GIT_COMMITTER_EMAIL": "hub@localhost", **(env or {})})
    return result.stdout.decode().strip()


def commit_files(repo: Path, branch: str, files: dict[str, bytes], deleted: list[str], message: str,
                 parent: str | None) -> str:
    """One commit on ``branch`` (git plumbing, the work tree is never touched); returns its id."""
    index = repo / ".git" / f"index-{threading.get_ident()}"
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        if parent:
            git(repo, "read-tree", parent, env=env)
        else:
            git(repo, "read-tree", "--empty", env=env)
        for path, content in files.items():
            blob = git(repo, "hash-object", "-w", "--stdin", stdin=content)
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        for path in deleted:
            git(repo, "update-index", "--force-remove", path, env=env)
        tree = git(repo, "write-tree", env=env)
    finally:
        index.unlink(missing_ok=True)
    commit = git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message)
    git(repo, "update-ref", f"refs/heads/{branch}", commit)
    return commit


class HubUploadServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root, self.token = Path(root), token
        self.private: dict[str, bool] = {}
        self.download_url: str | None = None  # where reads are forwarded
        self.lock = threading.Lock()  # one git writer at a time
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def repo_path(self, repo_id: str) -> Path:
        return self.root / "models" / repo_id

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Relay a redirect to the client instead of following it."""

    def redirect_request(self, *args, **kwargs):
        return None


class Handler(BaseHTTPRequestHandler):
    server: HubUploadServer

    def log_message(self, *args):  # keep pytest output clean
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str) -> None:
        self.reply(status, {"error": message})

    def forward(self, method: str) -> None:
        """A read, relayed to the download server as it answers (redirects included)."""
        if self.server.download_url is None:
            return self.error(404, "this server only takes uploads")
        request = urllib.request.Request(self.server.download_url + self.path, method=method,
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            response = opener.open(request, timeout=60)
        except urllib.error.HTTPError as exc:
            response = exc
        body = response.read() if method == "GET" else b""
        self.send_response(response.status if hasattr(response, "status") else response.code)
        for key, value in response.headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "server", "date", "content-length"):
                self.send_header(key, value)
        length = response.headers.get("Content-Length")
        self.send_header("Content-Length", str(len(body)) if method == "GET" or length is None else length)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.forward("GET")

    def do_HEAD(self):  # noqa: N802
        self.forward("HEAD")

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self.error(401, "Invalid credentials in Authorization header")
        path = unquote(urlparse(self.path).path)
        parts = path.strip("/").split("/")
        with self.server.lock:
            if path == "/api/repos/create":
                return self.create_repo(json.loads(body))
            if path == "/api/validate-yaml":
                return self.validate_yaml(json.loads(body))
            if len(parts) >= 6 and parts[:2] == ["api", "models"]:
                repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                repo = self.server.repo_path(repo_id)
                if not (repo / ".git").is_dir():
                    return self.error(404, "Repository not found")
                if action == "branch":
                    return self.create_branch(repo, revision, json.loads(body or b"{}"))
                if action == "preupload":
                    return self.preupload(json.loads(body))
                if action == "commit":
                    return self.commit(repo, repo_id, revision, body)
        self.error(404, f"no route {path}")

    # -- the five calls --------------------------------------------------------------------
    def create_repo(self, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if "/" not in repo_id:
            return self.error(400, "a repo id needs a namespace in this server")
        repo = self.server.repo_path(repo_id)
        if repo.exists():  # the Hub's 409 carries the url too; huggingface_hub's exist_ok reads it
            return self.reply(409, {"error": "You already created this model repo", "url": f"{self.server.url}/{repo_id}"})
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        commit_files(repo, "main", {".gitattributes": GITATTRIBUTES.encode()}, [], "initial commit", None)
        self.server.private[repo_id] = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.reply(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id})

    def validate_yaml(self, payload: dict) -> None:
        text = payload.get("content", "")
        if text.startswith("---"):
            try:
                meta = yaml.safe_load(text.split("---", 2)[1])
            except yaml.YAMLError as exc:
                return self.reply(400, {"errors": [{"message": str(exc)}], "warnings": []})
            if not isinstance(meta, dict):
                return self.reply(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        self.reply(200, {"errors": [], "warnings": []})

    def create_branch(self, repo: Path, branch: str, payload: dict) -> None:
        if git(repo, "branch", "--list", branch):
            return self.error(409, f"branch {branch} already exists")
        start = payload.get("startingPoint") or "main"
        git(repo, "branch", branch, start)
        self.reply(200, {})

    def preupload(self, payload: dict) -> None:
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                 for f in payload["files"]]
        self.reply(200, {"files": files})

    def commit(self, repo: Path, repo_id: str, revision: str, body: bytes) -> None:
        header, files, deleted = {}, {}, []
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    return self.error(400, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            else:  # lfsFile, deletedFolder, copies: preupload never asks for them here
                return self.error(400, f"this test server does not implement '{key}' operations")
        try:
            parent = git(repo, "rev-parse", "--verify", f"refs/heads/{revision}")
        except subprocess.CalledProcessError:
            return self.error(404, f"Invalid rev id: {revision}")
        if header.get("parentCommit") and header["parentCommit"] != parent:
            return self.error(412, "A commit has happened since. Please refresh and try again.")
        message = header.get("summary", "update") + ("\n\n" + header["description"] if header.get("description") else "")
        oid = commit_files(repo, revision, files, deleted, message, parent)
        self.reply(200, {"commitUrl": f"{self.server.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None, "success": True})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_hub(root: Path, token: str):
    """A Hub on 127.0.0.1 for ``token``: olah serving ``root/mirrors`` read-only for downloads,
    the upload server writing there (and forwarding reads to olah). Yields the root, the mirrors,
    olah's URL, the upload server and an HF_HOME inside ``root``."""
    root = Path(root)
    mirrors = root / "mirrors"
    (mirrors / "models").mkdir(parents=True)
    port = free_port()
    (root / "olah.toml").write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "olah-cache"}"\n'
        f'mirrors-path = ["{mirrors}"]\nmetadata-cache-ttl = 0\n[accessibility]\noffline = true\n'
    )
    log = open(root / "olah.log", "w")
    olah = subprocess.Popen([sys.executable, "-m", "olah.server", "-c", str(root / "olah.toml"),
                             "--log-path", str(root / "olah-logs")], stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/models/none/none/revision/main", timeout=2)
        except urllib.error.HTTPError:
            break  # it answers (404): up
        except OSError:
            if olah.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"olah did not start: {(root / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.3)
    try:
        with HubUploadServer(mirrors, token) as upload:
            upload.download_url = url  # reads through the upload endpoint go to olah
            yield {"root": root, "mirrors": mirrors, "olah": url, "upload": upload, "hf_home": root / "hf-home"}
    finally:
        olah.terminate()
        olah.wait(timeout=30)
        log.close()
