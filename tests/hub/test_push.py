"""`recolor push` and the model card: the exact upload, and the real huggingface_hub client against a local Hub."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from recolor.push.cards import IMAGENET_TERMS, write_model_card
from recolor.cli import app
from recolor.errors import NetworkUnavailableError, UsageError
from recolor.push.upload import plan_push, push_run
from test_hub import _closed_port, point_hub_at

runner = CliRunner()
TOKEN = "hf_local_test_token"
CHECKPOINT_BYTES = b"\x80\x04fake pickle with optimizer state"
RECIPE = {
    "name": "wgan", "summary": "U-Net + critic, Wasserstein loss with gradient penalty",
    "generator": {"depth": 4, "norm": "batch"},
    "discriminator": {"layers": 4, "norm": "instance", "minibatch_std": False},
    "adversarial": {"kind": "wasserstein-gp", "gp_weight": 10.0}, "critic_steps": 5,
    "recon_weight": [[1, 70.0], [19, 10.0], [26, 30.0]], "perceptual_weight": 0.0, "lr_g": 0.0004,
    "lr_d": 5e-05, "betas_g": [0.0, 0.9], "betas_d": [0.0, 0.9], "epochs": 30, "notes": ["a recipe note"],
}
EVAL = {
    "data": "imagenette/val", "size": 32, "n": 20, "ground_truth": {"colorfulness": 31.5},
    "rows": [
        {"model": "gray", "psnr": 22.31, "ssim": 0.9012, "colorfulness": 0.0, "delta_cf": -31.5, "vgg": None,
         "lpips": None, "fid": None, "images_per_s": None},
        {"model": "RUN", "psnr": 23.41, "ssim": 0.9123, "colorfulness": 17.25, "delta_cf": -14.25, "vgg": 0.1234,
         "lpips": None, "fid": None, "images_per_s": 80.0},
        {"model": "other-model", "psnr": 19.0, "ssim": 0.5, "colorfulness": 40.0, "delta_cf": 8.5, "vgg": 0.5,
         "lpips": None, "fid": None, "images_per_s": 10.0},
    ],
    "unavailable": {"lpips": "AlexNet weights cannot be downloaded", "fid": "Inception weights cannot be downloaded"},
    "skipped": [], "seconds": 3.0,
}
CARD_INFO = {
    "hardware": "2 shared CPU cores (test)", "deviations": ["rebalancing eps 1e-3 instead of the note's"],
    "failure_modes": ["skin turns orange on faded prints"], "description": "A tiny test model.",
}


def make_run(folder: Path) -> Path:
    """A run folder as `recolor train` writes it, small: width-8 generator, 2 epochs of metrics, samples, checkpoint."""
    import torch
    from PIL import Image

    from recolor.nn import UNetGenerator
    from recolor.nn.pretrained import save_generator

    torch.manual_seed(0)
    save_generator(UNetGenerator(width=8), folder, metadata={
        "recipe": RECIPE, "recipe_overrides": {"lr_g": 0.0002},
        "discriminator": {"width": 8, "layers": 4, "norm": "instance", "minibatch_std": False, "in_channels": 3},
        "perceptual_backbone": None,
        "training": {"epochs": 3, "batch_size": 4, "size": 32, "width": 8, "seed": 7, "precision_used": "bf16",
                     "world_size": 1, "epochs_done": 2, "device": "auto"},
        "data": {"path": "/data/imagenette-prepared", "prepare": {
            "source": "/data/imagenette2-320", "size": 32, "counts": {"train": 100, "val": 20}, "skipped": 3,
            "store": {"train": {"rows": 100}}, "ab_weights": {"bins": 22, "eps": 0.001, "range": [-110.0, 110.0]}}},
        "seed": 7, "versions": {"recolor": "0.0-test", "torch": torch.__version__},
        "metrics": {"epoch": 2, "batches": 20, "val_psnr": 21.5},
    })
    lines = [{"epoch": 1, "batches": 10, "seconds": 30.0, "val_psnr": 20.25, "images_per_s": 1.5},
             {"epoch": 2, "batches": 20, "seconds": 45.0, "val_psnr": 21.5, "images_per_s": 2.5}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "samples").mkdir()
    for epoch in (1, 2):
        Image.new("RGB", (12, 4), (epoch * 40, 90, 30)).save(folder / "samples" / f"epoch_00{epoch}.png")
    (folder / "checkpoint.pt").write_bytes(CHECKPOINT_BYTES)
    return folder


@pytest.fixture
def run(tmp_path) -> Path:
    return make_run(tmp_path / "run")


def eval_for(run: Path) -> dict:
    report = json.loads(json.dumps(EVAL))
    report["rows"][1]["model"] = str(run)  # as `recolor eval --data DATA runs/NAME` names the row
    return report


EXPECTED_FILES = ["config.json", "model.safetensors", "README.md", "metrics.jsonl", "samples/epoch_001.png",
                  "samples/epoch_002.png"]


# ------------------------------------------------------------------------------ files and card


def test_dry_run_lists_exactly_the_files_and_prints_the_card(run, tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps(eval_for(run)))
    (tmp_path / "info.json").write_text(json.dumps(CARD_INFO))
    result = runner.invoke(app, ["push", str(run), "--repo", "org/tiny-wgan", "--dry-run", "--eval",
                                 str(tmp_path / "eval.json"), "--card-info", str(tmp_path / "info.json")])
    assert result.exit_code == 0, result.output
    plan = plan_push(run, repo_id="org/tiny-wgan", eval_report=eval_for(run), extra=CARD_INFO)
    assert [u.path_in_repo for u in plan.uploads] == EXPECTED_FILES
    assert dict(plan.left_out)["checkpoint.pt"].startswith("training state")
    assert all(u.source is None or u.source.name != "checkpoint.pt" for u in plan.uploads)
    assert result.stdout == plan.card  # the card alone on stdout
    listed = [line.split()[0] for line in result.stderr.splitlines() if line.startswith("  ") and "left out" not in line]
    assert listed == EXPECTED_FILES
    assert "left out checkpoint.pt" in result.stderr

    no_logs = plan_push(run, repo_id="org/tiny-wgan", logs=False)
    assert [u.path_in_repo for u in no_logs.uploads] == ["config.json", "model.safetensors", "README.md"]


def test_card_holds_front_matter_recipe_numbers_training_eval_and_terms(run):
    card = write_model_card(run, eval_report=eval_for(run), extra={**CARD_INFO, "name": "tiny-wgan",
                                                                   "repo_id": "org/tiny-wgan"})
    front, body = card.split("---\n", 2)[1:]
    meta = yaml.safe_load(front)
    assert meta["license"] == "mit" and meta["library_name"] == "recolor"
    assert "image-colorization" in meta["tags"] and "recipe-wgan" in meta["tags"]
    assert body.lstrip().startswith("# tiny-wgan\n")
    assert "--model org/tiny-wgan" in body
    # every number of the recipe, the generator and the training settings
    for text in ("`lr_d` | 5e-05", "`lr_g` | 0.0004", "`adversarial.gp_weight` | 10", "`critic_steps` | 5",
                 "`betas_g` | [0, 0.9]", "epochs 1–18: 70, 19–25: 10, from 26: 30", "`width` | 8",
                 "`batch_size` | 4", "`ab_weights.eps` | 0.001", "`counts.train` | 100", "`lr_g` | 0.0002"):
        assert text in body, text
    # deviations: given ones first, then what config.json shows
    deviations = body.split("## Deviations from the design note\n\n")[1].split("\n\n")[0].splitlines()
    assert deviations == ["- rebalancing eps 1e-3 instead of the note's", "- 2 epochs instead of the recipe's 30",
                          "- network width 8 instead of the note's 64", "- trained at 32 px instead of the note's 256",
                          "- lr_g set to 0.0002 (recipe: 0.0004)"]
    assert "- Steps: 20 batches (discriminator steps), 4 generator steps" in body
    assert "- Wall time: 75 s" in body  # 30 s + 45 s from metrics.jsonl
    assert "- Hardware: 2 shared CPU cores (test)" in body
    assert IMAGENET_TERMS in body  # the data path names imagenette
    assert "- skin turns orange on faded prints" in body
    # the eval table: gray and this model only, "unavailable" where a metric was not computed
    table = [line for line in body.splitlines() if line.startswith("| gray") or line.startswith("| **tiny-wgan")]
    # columns the report does not hold (it predates psnr_p10, AuC, spurious, wrong, effnet) read "—"
    assert table == ["| gray (baseline) | 22.31 | — | 0.9012 | — | — | 0.00 | -31.50 | — | — | — "
                     "| unavailable | unavailable | unavailable |",
                     "| **tiny-wgan** | 23.41 | — | 0.9123 | — | — | 17.25 | -14.25 | — | — | — "
                     "| 0.1234 | unavailable | unavailable |"]
    assert "other-model" not in body
    assert "- lpips unavailable: AlexNet weights cannot be downloaded" in body
    digest = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert digest in body and "fp32" in body


def test_card_of_a_fine_tuned_run_names_its_source_and_stages(tmp_path):
    run = make_run(tmp_path / "fine")
    config = json.loads((run / "config.json").read_text())
    config["training"]["init_from"] = "/somewhere/runs/wgan-128"
    (run / "config.json").write_text(json.dumps(config))
    stages = ["4 epochs at 128 px from random weights", "3 epochs at 224 px, eps 0.1"]
    body = write_model_card(run, eval_report=None, extra={"stages": stages})
    assert "- fine-tuned: started from the networks of run `wgan-128` (`--init-from`), not from random weights" in body
    assert "  1. 4 epochs at 128 px from random weights\n  2. 3 epochs at 224 px, eps 0.1\n" in body
    assert "/somewhere" not in body.split("## Deviations")[1].split("##")[0]


def test_card_without_extras_says_what_is_not_recorded(run):
    card = write_model_card(run, eval_report=None, extra={})
    assert "Not evaluated yet" in card and "None recorded for this model yet." in card
    assert "- Hardware: not recorded (device setting `auto`, 1 process(es))" in card


def test_eval_report_without_a_row_for_the_run_is_refused(run, tmp_path):
    report = eval_for(run)
    report["rows"] = [r for r in report["rows"] if r["model"] != str(run)]
    (tmp_path / "eval.json").write_text(json.dumps(report))
    result = runner.invoke(app, ["push", str(run), "--repo", "org/x", "--dry-run", "--eval", str(tmp_path / "eval.json")])
    assert result.exit_code == 2 and "has no row for" in result.stderr and "other-model" in result.stderr
    with pytest.raises(UsageError, match="holds a revision"):
        plan_push(run, repo_id="org/x@v1")


# ------------------------------------------------------------------------------ a local Hub


class UploadHub(http.server.ThreadingHTTPServer):
    """The Hub's upload API as far as huggingface_hub's create_repo, create_branch and create_commit use it.

    POST /api/repos/create, /api/validate-yaml, /api/models/{repo}/preupload/{rev} (".safetensors" and
    ".png" answer "lfs", the rest "regular"), /{repo}.git/info/lfs/objects/batch (basic transfer),
    PUT of the LFS object, POST .../objects/verify, /api/models/{repo}/branch/{branch} and
    /api/models/{repo}/commit/{rev} (NDJSON: header, base64 "file" and "lfsFile" entries);
    GET /api/whoami-v2. Writes need `Authorization: Bearer TOKEN`.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UploadHandler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.repos: dict[str, dict] = {}  # repo -> {"visibility": ..., "branches": {name: {path: bytes}}}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.modes: dict[str, str] = {}  # path -> how it came: "regular" or "lfs"
        self.requests: list[str] = []
        self.bodies: list[bytes] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class _UploadHandler(http.server.BaseHTTPRequestHandler):
    server: UploadHub
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append(data)
        return data

    def _reply(self, status: int, payload=None, error_code: str | None = None) -> None:
        body = json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_code:
            self.send_header("X-Error-Code", error_code)
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._reply(401, {"error": "Invalid credentials"})
        return False

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append(f"GET {self.path}")
        if self.path == "/api/whoami-v2" and self._authorized():
            return self._reply(200, {"type": "user", "name": "tester"})
        if self.path != "/api/whoami-v2":
            self._reply(404, {"error": "not found"})

    def do_PUT(self):  # noqa: N802
        self.server.requests.append(f"PUT {self.path}")
        data = self._body()
        oid = self.path.rsplit("/", 1)[-1]
        if not self.path.startswith("/lfs-storage/") or hashlib.sha256(data).hexdigest() != oid:
            return self._reply(400, {"error": "content does not match its oid"})
        self.server.blobs[oid] = data
        self._reply(200)

    def do_POST(self):  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        self.server.requests.append(f"POST {path}")
        body = self._body()
        if not self._authorized():
            return
        parts = path.strip("/").split("/")
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo = f"{payload['organization']}/{payload['name']}"
            if repo in self.server.repos:
                # The Hub's conflict answer carries the url too: create_repo(exist_ok=True) reads it.
                return self._reply(409, {"error": "You already created this model repo",
                                         "url": f"{self.server.url}/{repo}"})
            self.server.repos[repo] = {"visibility": payload.get("visibility"), "branches": {"main": {}}}
            return self._reply(200, {"url": f"{self.server.url}/{repo}"})
        if path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            ok = content.startswith("---\n") and isinstance(yaml.safe_load(content.split("---\n")[1]), dict)
            return self._reply(200 if ok else 400, {"errors": [] if ok else [{"message": "bad front matter"}],
                                                    "warnings": []})
        if path.endswith(".git/info/lfs/objects/batch"):
            repo = path.strip("/")[: -len(".git/info/lfs/objects/batch")]
            objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True, "actions": {
                "upload": {"href": f"{self.server.url}/lfs-storage/{o['oid']}"},
                "verify": {"href": f"{self.server.url}/{repo}.git/info/lfs/objects/verify"}}}
                for o in json.loads(body)["objects"]]
            return self._reply(200, {"transfer": "basic", "objects": objects})
        if path.endswith(".git/info/lfs/objects/verify"):
            payload = json.loads(body)
            found = len(self.server.blobs.get(payload["oid"], b"")) == payload["size"]
            return self._reply(200 if found else 404, {})
        if len(parts) >= 6 and parts[:2] == ["api", "models"]:
            repo, action, revision = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            if repo not in self.server.repos:
                return self._reply(404, {"error": "Repository not found"}, "RepoNotFound")
            branches = self.server.repos[repo]["branches"]
            if action == "branch":
                if revision in branches:
                    return self._reply(409, {"error": "branch exists"})
                branches[revision] = dict(branches["main"])
                return self._reply(200)
            if revision not in branches:
                return self._reply(404, {"error": "Revision not found"}, "RevisionNotFound")
            if action == "preupload":
                files = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                          "uploadMode": "lfs" if f["path"].endswith((".safetensors", ".png")) else "regular"}
                         for f in json.loads(body)["files"]]
                return self._reply(200, {"files": files, "commitOid": "0" * 40})
            if action == "commit":
                return self._commit(repo, branches[revision], body)
        self._reply(404, {"error": f"no route {path}"})

    def _commit(self, repo: str, branch: dict, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header" or not lines[0]["value"]["summary"]:
            return self._reply(400, {"error": "no commit header"})
        staged = {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                staged[value["path"]] = base64.b64decode(value["content"])
                self.server.modes[value["path"]] = "regular"
            elif line["key"] == "lfsFile":
                blob = self.server.blobs.get(value["oid"])
                if blob is None or len(blob) != value["size"]:
                    return self._reply(422, {"error": f"LFS object of {value['path']} was never uploaded"})
                staged[value["path"]] = blob
                self.server.modes[value["path"]] = "lfs"
            else:
                return self._reply(400, {"error": f"unsupported operation {line['key']}"})
        branch.update(staged)  # all or nothing, as the Hub's commits are
        oid = hashlib.sha1(body).hexdigest()
        self._reply(200, {"success": True, "commitOid": oid, "commitUrl": f"{self.server.url}/{repo}/commit/{oid}"})

    def log_message(self, *args):
        pass


@pytest.fixture
def upload_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    server = UploadHub()
    point_hub_at(monkeypatch, server.url, tmp_path / "hf-cache")
    # hf_xet would upload through Xet storage (a CAS service this server does not speak); without it
    # the client takes the Hub's LFS batch protocol, which the server does.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield server
    server.shutdown()
    server.server_close()


def test_push_uploads_exactly_the_planned_files_through_the_real_client(run, upload_hub, tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps(eval_for(run)))
    start = time.perf_counter()
    result = runner.invoke(app, ["push", str(run), "--repo", "org/tiny-wgan", "--private", "--eval",
                                 str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 10
    assert "pushed 9 files to" in result.stdout and "as tester" in result.stdout

    repo = upload_hub.repos["org/tiny-wgan"]
    assert repo["visibility"] == "private"
    uploaded = repo["branches"]["main"]
    # The run had no inference export (saved before exports existed): push made it and published it.
    published = EXPECTED_FILES + ["openvino_model.xml", "openvino_model.bin", "export.json"]
    assert sorted(uploaded) == sorted(published)
    for name in published:
        if name != "README.md":
            assert uploaded[name] == (run / name).read_bytes(), name
    plan = plan_push(run, repo_id="org/tiny-wgan", private=True, eval_report=eval_for(run))
    assert uploaded["README.md"].decode() == plan.card
    assert upload_hub.modes["model.safetensors"] == "lfs" and upload_hub.modes["config.json"] == "regular"
    assert not any(CHECKPOINT_BYTES in body or b"checkpoint.pt" in body for body in upload_hub.bodies)

    # Again onto a new branch of the now existing repo: create_repo's 409 is fine, the branch is made.
    again = push_run(run, repo_id="org/tiny-wgan", revision="v1", logs=False)
    assert again.commit_url.startswith(f"{upload_hub.url}/org/tiny-wgan/commit/")
    assert "POST /api/models/org/tiny-wgan/branch/v1" in upload_hub.requests


def test_rejected_token_is_a_one_line_usage_error(run, upload_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    result = runner.invoke(app, ["push", str(run), "--repo", "org/tiny"])
    assert result.exit_code == 2 and "rejected the token" in result.stderr and "HF_TOKEN" in result.stderr
    assert upload_hub.repos == {}


# ------------------------------------------------------------------------------ failing fast


def test_missing_token_names_the_login(run, monkeypatch, tmp_path):
    from huggingface_hub import constants

    point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", tmp_path / "hf-cache")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
    result = runner.invoke(app, ["push", str(run), "--repo", "org/tiny"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Hugging Face token" in lines[0]
    assert "hf auth login" in lines[0] and "huggingface-cli login" in lines[0] and "HF_TOKEN" in lines[0]


def test_unreachable_hub_fails_within_seconds(run, monkeypatch, tmp_path):
    point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}", tmp_path / "hf-cache")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    start = time.perf_counter()
    with pytest.raises(NetworkUnavailableError, match="cannot reach the Hugging Face Hub"):
        push_run(run, repo_id="org/tiny")
    assert time.perf_counter() - start < 3


def test_silent_hub_times_out_quickly(run, monkeypatch, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        point_hub_at(monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "hf-cache")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
        start = time.perf_counter()
        with pytest.raises(NetworkUnavailableError):
            push_run(run, repo_id="org/tiny")
        assert time.perf_counter() - start < 4
    finally:
        listener.close()


def test_offline_mode_refuses_but_dry_run_works(run, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UsageError, match="offline mode"):
        push_run(run, repo_id="org/tiny")
    assert push_run(run, repo_id="org/tiny", dry_run=True).dry_run


def test_card_names_the_neutral_colour_loss_options_as_deviations():
    from recolor.push.cards import _derived_deviations
    from recolor.train.recipes import RECIPES, apply_overrides

    overrides = {"neutral_weight_floor": 1.5, "neutral_chroma_weight": 35.0, "colorfulness_weight": 8.0,
                 "lr_g": 1e-4}
    config = {"recipe": apply_overrides(RECIPES["progan"], overrides).to_dict(), "recipe_overrides": overrides,
              "generator": {"width": 64}, "training": {"epochs": 20, "size": 256}}
    found = _derived_deviations(config)
    assert found == [
        "AB-rebalancing weight of pixels neutral in the ground truth (chroma < 5) raised to at least 1.5 "
        "(`--neutral-weight-floor`; not in the note)",
        "extra loss 35 · the predicted chroma where the ground truth is neutral (`--neutral-chroma-weight`; "
        "not in the note)",
        "extra loss 8 · the colourfulness shortfall, DDColor's colourfulness loss as a hinge towards each photo's "
        "own (`--colorfulness-weight`; not in the note)",
        "lr_g set to 0.0001 (recipe: 0.0004)"]
    # Switched off (0) they are no deviation.
    config["recipe_overrides"] = {"neutral_chroma_weight": 0.0}
    assert _derived_deviations(config) == []
