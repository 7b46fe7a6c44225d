"""Models from the Hugging Face Hub: the real huggingface_hub client against a small local Hub on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

import recolor
from apply_fixtures import save_gray, tiny_model
from recolor.hub import registry as models
from recolor.cli import app
from recolor.errors import ModelError, NetworkUnavailableError, UsageError
from recolor.hub.registry import BUILTIN_MODELS, load_model, resolve_model

runner = CliRunner()
COMMIT = "a" * 40


class FakeHub(http.server.ThreadingHTTPServer):
    """Answers HEAD and GET on /{org}/{name}/resolve/{revision}/{file} as the Hub does."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_port}"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: FakeHub

    def _answer(self, body: bool) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        parts = unquote(self.path.split("?")[0]).strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(404, "RepoNotFound")
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo not in self.server.repos:
            return self._error(404, "RepoNotFound")
        if revision not in ("main", COMMIT):
            return self._error(404, "RevisionNotFound")
        files = self.server.repos[repo]
        if filename not in files:
            return self._error(404, "EntryNotFound")
        data = files[filename]
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _error(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self._answer(body=False)

    def do_GET(self):  # noqa: N802
        self._answer(body=True)

    def log_message(self, *args):
        pass


def point_hub_at(monkeypatch, url: str, cache: Path) -> None:
    """What HF_ENDPOINT, HF_HUB_OFFLINE=0 and HF_HOME do, for a huggingface_hub that is already imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def model_requests(hub: FakeHub) -> list[str]:
    """Requests for repo files (huggingface_hub also asks the endpoint for its agent registry)."""
    return [r for r in hub.requests if "/resolve/" in r]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    return {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}


@pytest.fixture
def hub(monkeypatch, tmp_path, model_files):
    """A local Hub holding org/tiny (a recolor model) and org/pickled (only pytorch_model.bin)."""
    server = FakeHub()
    server.repos["org/tiny"] = dict(model_files)
    server.repos["org/pickled"] = {"config.json": model_files["config.json"], "pytorch_model.bin": b"pickle"}
    point_hub_at(monkeypatch, server.url, tmp_path / "hf-cache")
    yield server
    server.shutdown()
    server.server_close()


def test_hub_id_downloads_both_files_into_the_hf_cache_and_then_works_offline(hub, monkeypatch, tmp_path):
    folder = resolve_model("org/tiny")
    assert folder.is_relative_to(tmp_path / "hf-cache") and folder.name == COMMIT
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    assert any(r.startswith("GET /org/tiny/resolve/") and r.endswith("model.safetensors") for r in hub.requests)
    generator, config = load_model("org/tiny")
    assert config["generator"]["width"] == 8

    from huggingface_hub import constants

    hub.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model("org/tiny") == folder
    assert model_requests(hub) == []


def test_a_repo_with_an_export_brings_it_and_apply_runs_it_without_making_one(hub, tmp_path):
    from recolor.engine.export import export_folder

    exported = tiny_model(tmp_path / "exported")
    export_folder(exported)
    hub.repos["org/exported"] = {p.name: p.read_bytes() for p in exported.iterdir() if p.is_file()}
    folder = resolve_model("org/exported")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "export.json",
                                                  "openvino_model.xml", "openvino_model.bin"}
    save_gray(tmp_path / "a.jpg")
    result = runner.invoke(app, ["apply", str(tmp_path / "a.jpg"), "--model", "org/exported", "--out",
                                 str(tmp_path / "out"), "--render-size", "32", "--engine", "openvino"])
    assert result.exit_code == 0, result.output
    assert "making one" not in result.stderr and (tmp_path / "out" / "a.jpg").is_file()


def test_pinned_commit_in_cache_needs_no_request(hub):
    folder = resolve_model(f"org/tiny@{COMMIT}")
    hub.requests.clear()
    assert resolve_model(f"org/tiny@{COMMIT}") == folder
    assert model_requests(hub) == []


def test_cached_branch_is_used_when_the_hub_goes_down(hub, monkeypatch):
    folder = resolve_model("org/tiny")
    from huggingface_hub import constants

    point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", Path(constants.HF_HUB_CACHE))
    assert resolve_model("org/tiny") == folder


def test_repo_without_safetensors_is_refused_and_its_pickle_never_fetched(hub):
    with pytest.raises(ModelError, match="never loads pickles"):
        resolve_model("org/pickled")
    assert not any("pytorch_model.bin" in r for r in hub.requests)


def test_unknown_repo_and_revision_are_usage_errors(hub, tmp_path):
    with pytest.raises(UsageError, match="no such Hub repo"):
        resolve_model("org/missing")
    with pytest.raises(UsageError, match="no revision 'v9'"):
        resolve_model("org/tiny@v9")
    save_gray(tmp_path / "a.jpg")
    result = runner.invoke(app, ["apply", str(tmp_path / "a.jpg"), "--model", "org/missing", "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 2 and "unknown model 'org/missing'" in result.stderr


def test_pull_of_a_builtin_checks_sha256_and_apply_then_needs_no_network(hub, monkeypatch, model_files, tmp_path):
    digest = hashlib.sha256(model_files["model.safetensors"]).hexdigest()
    monkeypatch.setattr(models, "WEIGHTS_ROOT", tmp_path / "no-packaged-weights")
    # A repo pushed before exports existed: no export pinned; apply makes one once and caches it.
    entry = dataclasses.replace(BUILTIN_MODELS["gan"], repo_id="org/tiny", revision=COMMIT, sha256="0" * 64,
                                export_sha256=None)
    monkeypatch.setitem(BUILTIN_MODELS, "gan", entry)
    wrong = runner.invoke(app, ["models", "pull", "gan"])
    assert wrong.exit_code == 1 and "not the expected" in wrong.stderr

    monkeypatch.setitem(BUILTIN_MODELS, "gan", dataclasses.replace(entry, sha256=digest))
    pulled = runner.invoke(app, ["models", "pull", "gan"])
    assert pulled.exit_code == 0, pulled.output
    assert "pulled (HF cache)" in runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"}).stdout
    hub.requests.clear()
    save_gray(tmp_path / "a.jpg")
    result = runner.invoke(app, ["apply", str(tmp_path / "a.jpg"), "--model", "gan", "--out", str(tmp_path / "out"),
                                 "--render-size", "32"])
    assert result.exit_code == 0, result.output
    assert model_requests(hub) == []  # a built-in name never goes to the network
    verify = runner.invoke(app, ["models", "verify", "gan"])
    assert verify.exit_code == 0 and "matches the registry" in verify.stdout


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: connections are refused


def test_unreachable_hub_fails_within_seconds_naming_the_way_out(monkeypatch, tmp_path):
    point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", tmp_path / "hf-cache")
    start = time.perf_counter()
    with pytest.raises(NetworkUnavailableError) as info:
        resolve_model("org/tiny")
    assert time.perf_counter() - start < 3
    assert "cannot reach the Hugging Face Hub" in info.value.cause
    assert "HF_HUB_OFFLINE" in info.value.fix and "--model RUN_FOLDER" in info.value.fix


def test_silent_hub_times_out_quickly(monkeypatch, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        point_hub_at(monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "hf-cache")
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
        start = time.perf_counter()
        with pytest.raises(NetworkUnavailableError):
            resolve_model("org/tiny")
        assert time.perf_counter() - start < 4
    finally:
        listener.close()


def test_cli_in_a_fresh_process_follows_hf_endpoint_and_hf_home(hub, tmp_path):
    save_gray(tmp_path / "a.jpg")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "0",
           "PYTHONPATH": str(Path(recolor.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "recolor", "apply", str(tmp_path / "a.jpg"), "--model", "org/tiny",
                           "--out", str(tmp_path / "out"), "--render-size", "32"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.jpg").exists()
    assert list((tmp_path / "home" / "hub").glob("models--org--tiny/snapshots/*/model.safetensors"))
