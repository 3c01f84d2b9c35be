"""Save, push and download: the three moves between a model and a Hub repo.

Only huggingface_hub's public client is used (``HfApi.create_repo / create_branch /
upload_folder``, ``snapshot_download``), so tokens, endpoint, cache and offline mode are
whatever huggingface_hub resolves; ebmkit stores no credentials of its own.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ebmkit.hub.card import model_card
from ebmkit.files import save_tensors, weights_kind, write_json

WEIGHTS = "model.safetensors"
PICTURES = ("density.png", "samples.png")  # a run's picture: 2D density, or an image grid
# What a download fetches: never a pickle, even if someone uploaded one beside the model.
ALLOW_PATTERNS = ["config.json", "*.safetensors", "README.md", "*.png"]
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class HubError(RuntimeError):
    """A Hub repo that cannot be reached, found or written: one line says which and why."""


def parse_hub_id(text: str) -> tuple[str, str | None]:
    """``org/name``, ``hf://org/name`` or ``hf://org/name@revision`` -> (repo id, revision)."""
    body = text.removeprefix("hf://")
    repo_id, _, revision = body.partition("@")
    if not REPO_ID.fullmatch(repo_id):
        raise HubError(f"'{text}' is not a Hub model id; expected org/name (optionally hf://org/name@revision)")
    return repo_id, revision or None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP library this huggingface_hub version uses."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


@contextmanager
def hub_errors(repo_id: str, revision: str | None, *, writing: bool = False):
    """Turn huggingface_hub's exceptions into one HubError line naming the repo and the fix."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"'{repo_id}'" + (f" at revision '{revision}'" if revision else "")
    try:
        yield
    except OfflineModeIsEnabled:
        raise HubError(f"cannot {'push to' if writing else 'reach'} {where}: HF_HUB_OFFLINE is set") from None
    except RevisionNotFoundError:
        raise HubError(f"revision '{revision}' not found in Hub repo '{repo_id}'") from None
    except RepositoryNotFoundError:
        raise HubError(f"Hub repo '{repo_id}' not found (a private repo needs a token: set HF_TOKEN or run "
                       "`hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise HubError(f"{where} is not in the local Hub cache and the Hub cannot be reached "
                       "(offline, or HF_HUB_OFFLINE=1)") from None
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            action = "write to" if writing else "read"
            raise HubError(f"not allowed to {action} Hub repo '{repo_id}' (HTTP {status}): set HF_TOKEN to a token "
                           "with write access, or run `hf auth login`") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubError(f"Hub request for {where} failed: {first}") from None
    except HFValidationError as exc:
        raise HubError(f"'{repo_id}' is not a valid Hub repo id: {exc}") from None
    except _transport_errors() as exc:
        raise HubError(f"cannot connect to the Hub for {where}: {type(exc).__name__}: {exc}") from None


def _last_metrics(model) -> dict | None:
    """The run's eval.json, if it evaluated the weights being pushed."""
    if model.source_dir is None:
        return None
    path = Path(model.source_dir) / "eval.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if weights_kind(metrics.get("weights", WEIGHTS)) != model.weights_kind:
        return None
    return metrics


def save_pretrained(model, folder: str | Path, repo_id: str | None = None, command: str | None = None) -> Path:
    """Write the files of a Hub repo into ``folder``: weights, config.json, model card, picture."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config(shared=True)
    save_tensors(model.state_dict(), folder / WEIGHTS, metadata=model.weights_metadata())
    write_json(config, folder / "config.json")
    picture = None
    for name in PICTURES:
        if model.source_dir is not None and (Path(model.source_dir) / name).is_file():
            if Path(model.source_dir).resolve() != folder.resolve():
                shutil.copyfile(Path(model.source_dir) / name, folder / name)
            picture = name
            break
    model_card(config, repo_id, metrics=_last_metrics(model), picture=picture, command=command).save(folder / "README.md")
    return folder


def push_to_hub(model, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                commit_message: str | None = None, token: str | bool | None = None, command: str | None = None) -> str:
    """Create the repo if needed (``private`` applies then), the branch ``revision`` if needed,
    and commit the `save_pretrained` files in one commit; returns the commit id."""
    from huggingface_hub import HfApi

    repo_id, uri_revision = parse_hub_id(repo_id)
    revision = revision or uri_revision
    api = HfApi()
    message = commit_message or f"ebmkit: {model.recipe.name} on {model.recipe.data['name']} ({model.weights_kind} weights)"
    with tempfile.TemporaryDirectory() as tmp, hub_errors(repo_id, revision, writing=True):
        save_pretrained(model, tmp, repo_id=repo_id, command=command)
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=message,
                                 token=token)
    return info.oid


def download(repo: str, revision: str | None = None, out: str | Path | None = None,
             token: str | bool | None = None) -> Path:
    """Fetch a pushed model (through the cache, or into ``out``) and return its folder.

    The revision is always sent (``main`` by default): a branch, tag or commit id pins it.
    """
    from huggingface_hub import snapshot_download

    repo_id, uri_revision = parse_hub_id(repo)
    if uri_revision and revision and uri_revision != revision:
        raise HubError(f"'{repo}' names revision '{uri_revision}' but revision '{revision}' was asked for")
    revision = revision or uri_revision or "main"
    with hub_errors(repo_id, revision):
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS,
                                      local_dir=str(out) if out is not None else None, token=token))
    if not (path / "config.json").is_file():
        raise HubError(f"Hub repo '{repo_id}' at revision '{revision}' has no config.json: not a model pushed by ebmkit")
    return path
