"""`recolor push`: publish a run folder (or a weights folder) on the Hugging Face Hub with its model card.

Exactly these files go up, in one commit:

    config.json          what builds the network, the recipe, settings and data summary
    model.safetensors    the generator's weights, as they are (fp32 from a run, fp16 when shipped)
    README.md            the model card (`recolor.push.cards.write_model_card`), generated, not copied
    metrics.jsonl        the per-epoch log, when the folder has one      (logs=True)
    samples/*.png        the validation sample grids, when present       (logs=True)

Nothing else: above all never `checkpoint.pt`, which holds the optimizer state and is a pickle.

A push asks the Hub once, without retries and with a short timeout (`recolor.hub.registry`' approach for
downloads), before it creates the repo and commits: huggingface_hub's own client waits forever on
a Hub that never answers, so an unreachable Hub fails within seconds, and that first request
(`/api/whoami-v2`) also tells a rejected token apart. The token is the usual one: `HF_TOKEN`, or
what `hf auth login` stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recolor import __version__
from recolor.hub.exports import EXPORT_FILES, RECORD_NAME
from recolor.push.cards import CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, write_model_card
from recolor.errors import ModelError, NetworkUnavailableError, RecolorError, UsageError

CARD_NAME = "README.md"
SAMPLES_DIR = "samples"
CHECKPOINT_NAME = "checkpoint.pt"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_REVISION = re.compile(r"^[\w.-]+(/[\w.-]+)*$")
LOGIN_FIX = "log in with `hf auth login` (formerly `huggingface-cli login`) or set HF_TOKEN to a token with write access"


@dataclass(frozen=True)
class Upload:
    """One file of the commit: `source` on disk, or None for the generated card."""

    path_in_repo: str
    source: Path | None
    size: int  # bytes


@dataclass
class PushPlan:
    folder: Path
    repo_id: str
    revision: str
    private: bool
    card: str
    uploads: list[Upload]
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (path in the folder, why)

    @property
    def total_bytes(self) -> int:
        return sum(upload.size for upload in self.uploads)


@dataclass
class PushResult:
    plan: PushPlan
    dry_run: bool
    repo_url: str | None = None
    commit_url: str | None = None
    user: str | None = None  # the account the token belongs to


def plan_push(run: str | Path, *, repo_id: str, revision: str = "main", private: bool = False,
              eval_report: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
              logs: bool = True) -> PushPlan:
    """What `push_run` would upload, and the card; reads only local files.

    Raises UsageError for a bad repo id or revision, ModelError when the folder is not a model that
    loads (its weights are loaded once into the network, so a broken folder is never published).
    """
    from recolor.hub.registry import verify_folder

    folder = Path(run).expanduser()
    _check_repo_id(repo_id)
    if not _REVISION.match(revision) or ".." in revision:
        raise UsageError(f"--revision {revision!r} is not a branch name", "use a branch such as main or v1")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder", "pass a run folder (runs/NAME) or a weights folder")
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise ModelError(f"{folder} has no {' or '.join(missing)}: there is no model to publish",
                         "a run folder gets model.safetensors when `recolor train` saves it")
    _, problem = verify_folder(folder)
    if problem is not None:
        raise ModelError(f"{folder} does not load ({problem})", "publish a folder that `recolor apply --model` loads")

    card = write_model_card(folder, eval_report=eval_report,
                            extra={"name": repo_id.split("/")[1], "repo_id": repo_id, **(extra or {})})
    names = [CONFIG_NAME, WEIGHTS_NAME]
    # The inference export (checked against the weights by verify_folder above): what apply runs.
    if (folder / RECORD_NAME).is_file():
        names += [*EXPORT_FILES, RECORD_NAME]
    if logs:
        if (folder / METRICS_NAME).is_file():
            names.append(METRICS_NAME)
        samples = folder / SAMPLES_DIR
        if samples.is_dir():
            names += sorted(f"{SAMPLES_DIR}/{p.name}" for p in samples.glob("*.png")
                            if p.is_file() and not p.name.startswith("."))
    uploads = [Upload(name, folder / name, (folder / name).stat().st_size) for name in names]
    uploads.insert(2, Upload(CARD_NAME, None, len(card.encode("utf-8"))))

    chosen = set(names)
    left_out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative not in chosen:
            left_out.append((relative, _why_left_out(relative, logs)))
    return PushPlan(folder=folder, repo_id=repo_id, revision=revision, private=private, card=card,
                    uploads=uploads, left_out=left_out)


def push_run(run: str | Path, *, repo_id: str, revision: str = "main", private: bool = False,
             dry_run: bool = False, eval_report: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None, logs: bool = True) -> PushResult:
    """Publish `run` as the Hub repo `repo_id` (created when missing) in one commit on `revision`.

    `dry_run` stops after planning: no token and no network needed. Otherwise raises UsageError
    without a token, a rejected one or in offline mode, NetworkUnavailableError when the Hub cannot
    be reached (within the `recolor.hub.registry` timeout, 5 s by default) or fails the upload.
    """
    plan = plan_push(run, repo_id=repo_id, revision=revision, private=private, eval_report=eval_report,
                     extra=extra, logs=logs)
    if dry_run:
        return PushResult(plan=plan, dry_run=True)
    if not (plan.folder / RECORD_NAME).is_file():  # a run saved before exports existed: make it, publish it
        from recolor.engine.export import export_folder

        export_folder(plan.folder)
        plan = plan_push(run, repo_id=repo_id, revision=revision, private=private, eval_report=eval_report,
                         extra=extra, logs=logs)

    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UsageError("offline mode is on (HF_HUB_OFFLINE): pushing needs the Hugging Face Hub",
                         "unset HF_HUB_OFFLINE, or use --dry-run to see what would be uploaded")
    token = get_token()
    if not token:
        raise UsageError(f"no Hugging Face token: pushing to {repo_id} needs one", LOGIN_FIX)
    endpoint = constants.ENDPOINT
    user = _check_hub(endpoint, token)
    repo_url, commit_url = _upload(plan, endpoint=endpoint, token=token)
    return PushResult(plan=plan, dry_run=False, repo_url=repo_url, commit_url=commit_url, user=user)


def read_json_object(path: str | Path, *, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from a file given on the command line (the --eval report, --card-info)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path} is not a JSON {what} ({error})", fix) from None
    if not isinstance(value, dict):
        raise UsageError(f"{path} holds a JSON {type(value).__name__}, not a {what}", fix)
    return value


# ------------------------------------------------------------------------------------------ helpers


def _check_repo_id(repo_id: str) -> None:
    if "@" in repo_id:
        raise UsageError(f"--repo {repo_id!r} holds a revision", "give the branch with --revision")
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise UsageError(f"--repo {repo_id!r} is not a Hub repo id", "write it as ORG/NAME, e.g. recolor-cli/recolor-gan")


def _why_left_out(relative: str, logs: bool) -> str:
    if relative == CHECKPOINT_NAME:
        return "training state with optimizer moments, a pickle: never published"
    if relative == CARD_NAME:
        return "replaced by the generated model card"
    if not logs and (relative == METRICS_NAME or relative.startswith(f"{SAMPLES_DIR}/")):
        return "a training log (--no-logs)"
    return "not part of a published model"


def _check_hub(endpoint: str, token: str) -> str | None:
    """One request, no retries, short timeout: is the Hub there and does it take the token?"""
    from huggingface_hub.utils import build_hf_headers, get_session

    from recolor.hub.registry import _hub_timeout, _transport_errors

    try:
        response = get_session().get(
            f"{endpoint}/api/whoami-v2", timeout=_hub_timeout(),
            headers=build_hf_headers(token=token, library_name="recolor", library_version=__version__))
    except _transport_errors() as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise NetworkUnavailableError(f"cannot reach the Hugging Face Hub at {endpoint} ({reason})",
                                      "check the connection (HF_ENDPOINT names the Hub); --dry-run shows what "
                                      "would be uploaded without the network") from None
    if response.status_code == 401:
        raise UsageError(f"the Hugging Face Hub at {endpoint} rejected the token (HTTP 401)", LOGIN_FIX)
    if response.status_code >= 400:
        raise NetworkUnavailableError(f"the Hugging Face Hub at {endpoint} answered HTTP {response.status_code}",
                                      "try again later")
    try:
        return response.json().get("name")
    except (ValueError, AttributeError):
        return None


def _upload(plan: PushPlan, *, endpoint: str, token: str) -> tuple[str, str]:
    """Create the repo (and branch) when missing, then one commit with every file; (repo url, commit url)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token, library_name="recolor", library_version=__version__)
    operations = [CommitOperationAdd(path_in_repo=u.path_in_repo,
                                     path_or_fileobj=str(u.source) if u.source else plan.card.encode("utf-8"))
                  for u in plan.uploads]
    try:
        repo_url = api.create_repo(plan.repo_id, private=plan.private, exist_ok=True, repo_type="model")
        if plan.revision != "main":
            api.create_branch(plan.repo_id, branch=plan.revision, exist_ok=True)
        info = api.create_commit(plan.repo_id, operations, revision=plan.revision,
                                 commit_message=f"Upload {plan.folder.resolve().name} with recolor {__version__}")
    except (RuntimeError, ValueError, *_hub_errors()) as error:
        typed = _explain(error, plan.repo_id, endpoint)
        if typed is None:
            raise
        raise typed from None
    return str(repo_url), info.commit_url


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import HfHubHTTPError

    from recolor.hub.registry import _transport_errors

    return (HfHubHTTPError, *_transport_errors())


def _explain(error: BaseException, repo_id: str, endpoint: str) -> RecolorError | None:
    """The typed error for a failed create_repo / create_commit, or None for a bug (re-raised as is).

    huggingface_hub wraps a failed LFS upload in a RuntimeError whose cause is the HTTP or transport
    error, and signals a refused model card or a malformed Hub answer with ValueError.
    """
    from huggingface_hub.errors import HfHubHTTPError

    from recolor.hub.registry import _transport_errors

    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    for cause in chain:
        if isinstance(cause, HfHubHTTPError):
            status = cause.response.status_code if cause.response is not None else None
            message = str(cause).splitlines()[0]
            if status == 401:
                return UsageError(f"the Hub at {endpoint} rejected the token while pushing to {repo_id}", LOGIN_FIX)
            if status == 403:
                return UsageError(f"this token may not write to {repo_id} (HTTP 403)",
                                  "use a write token of an account that may create repos in that organisation")
            return NetworkUnavailableError(f"the Hub at {endpoint} answered HTTP {status} while pushing to {repo_id} "
                                           f"({message})", "try again: a commit is all or nothing, so nothing "
                                           "half-published stays behind")
        if isinstance(cause, _transport_errors()):
            reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            return NetworkUnavailableError(f"the connection to the Hub at {endpoint} failed while pushing to "
                                           f"{repo_id} ({reason})", "try again: a commit is all or nothing")
    if not isinstance(error, ValueError):
        return None
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ModelError(f"the Hub at {endpoint} refused the upload to {repo_id} ({message})",
                      "check the repo id and the model card; --dry-run prints what would be uploaded")
