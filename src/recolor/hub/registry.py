"""The registry of built-in models, and turning a `--model` value into a folder of weights.

A model is always a folder holding `config.json` + `model.safetensors` (see `recolor.nn.pretrained`).
`--model` may name:

- a built-in model (`gan`, `wgan`, `progan`): the weights shipped inside the package under
  `recolor/weights/NAME/`, or, when this install has none, the copy that `recolor models pull NAME`
  put into the Hugging Face cache at the registry's pinned revision. Either way: no network call.
- a local folder, such as a training run folder `runs/NAME/`.
- a Hugging Face Hub repo id `org/name`, optionally `org/name@revision`: `config.json` and
  `model.safetensors` are fetched with `hf_hub_download` into the standard HF cache. Pickles
  (`pytorch_model.bin`) are never fetched nor loaded.

The Hub client retries a failed connection for about 23 s before it gives up; `resolve_model` asks
the Hub once, without retries and with a short timeout, before it downloads, so an unreachable Hub
fails within seconds and says what to do instead. `HF_HUB_OFFLINE=1` is respected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recolor.errors import ModelError, NetworkUnavailableError, UsageError
from recolor.hub.files import CONFIG_NAME, WEIGHTS_NAME, file_sha256

if TYPE_CHECKING:
    import torch

    from recolor.nn.unet import UNetGenerator

WEIGHTS_ROOT = Path(__file__).parents[1] / "weights"  # package data beside the code: recolor/weights/NAME/

# Seconds to wait for the Hub's first answer before calling it unreachable. HF_HUB_ETAG_TIMEOUT
# overrides it (huggingface_hub's own default, 10 s, is generous for a metadata request).
DEFAULT_HUB_TIMEOUT = 5.0

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")


@dataclass(frozen=True)
class BuiltinModel:
    """One entry of the registry.

    `revision` is the pinned commit of `repo_id` on the Hugging Face Hub and `sha256` the hex
    digest of its `model.safetensors` (which is byte for byte the file shipped in the package).
    `export_sha256` is the digest of its export.json, which holds the digests of the inference
    export's files and of the weights they were made from (recolor.hub.exports): one pin for the
    whole chain. `revision` is None until the weights are published on the Hub; `sha256` is None for
    a model that ships no weights.
    """

    name: str
    description: str
    repo_id: str
    revision: str | None = None
    sha256: str | None = None
    export_sha256: str | None = None

    @property
    def package_folder(self) -> Path:
        """Where the weights shipped inside the package live (present or not)."""
        return WEIGHTS_ROOT / self.name

    @property
    def hub_spec(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


# The one registry: `recolor models list`, `--model` and the docs all come from this dict.
# sha256 is the digest of the model.safetensors shipped in the package (scripts/ship_weights.py
# prints it). The Hub repos are where these weights are meant to be published (`recolor push`);
# they could not be published from the machine that trained them, so revision stays None until
# then and `recolor models pull` has nothing to fetch.
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "gan": BuiltinModel(
        name="gan",
        description="EfficientNet-Lite0 U-Net + PatchGAN, BCE soft labels, rebalanced L1",
        repo_id="recolor-cli/recolor-gan",
        sha256="2bbdd7c263aa5e69286fd2778302fb6ab46fa9d663ce260b326383762be15334",
        export_sha256="e9ce4435cd8900f86431b822097b555a199251bba19fdec385db2151309902df",
    ),
    "wgan": BuiltinModel(
        name="wgan",
        description="EfficientNet-Lite0 U-Net + critic, WGAN-GP, rebalanced L1",
        repo_id="recolor-cli/recolor-wgan",
        sha256="f7c24b3bb5921830120eac9163bd94a5194042246af17a986ae9905cb8c5de48",
        export_sha256="9b0e11153b3e2d5c3d87cc29efd25c156c5cdda0576bf9ae521b75925a221acf",
    ),
    "progan": BuiltinModel(
        name="progan",
        description="EfficientNet-Lite0 U-Net + stddev PatchGAN, EfficientNet perceptual loss",
        repo_id="recolor-cli/recolor-progan",
        sha256="5f5cf7d163e720f613f285a528bfd53d9ed94109a475aa8146873b9a7dc870de",
        export_sha256="36ab209134dfd2162e993078c1126c57b663d95492c0ec178a840e7da9211985",
    ),
}
# Chosen from the figures of docs/results.md: progan has the highest PSNR of the three on the
# selection set (24.01 dB against gray's 23.43) and the least spurious color (1.6% of neutral pixels
# against 2.8-3.4%), and on the old photos the most natural faces and skies with no orange casts on
# walls and water; it is the least colorful (71% of the ground truth's colorfulness).
DEFAULT_MODEL = "progan"


# ------------------------------------------------------------------------------------ resolving


def resolve_model(spec: str, *, offline: bool | None = None) -> Path:
    """The folder (config.json + model.safetensors) that `spec` names.

    `spec`: a built-in name, a local folder, or a Hub id `org/name[@revision]`. A built-in name
    wins over a folder of the same name in the current directory (write `./gan` for the folder).
    `offline`: None follows `HF_HUB_OFFLINE`; True never touches the network (a Hub id must then
    be in the HF cache). Built-in names never touch the network.

    Raises UsageError when `spec` names nothing at all, ModelError when the model exists but cannot
    be used here, NetworkUnavailableError when the Hub cannot be reached and nothing is cached.
    """
    if spec in BUILTIN_MODELS:
        return _resolve_builtin(BUILTIN_MODELS[spec])
    path = Path(spec).expanduser()
    if path.exists():
        return _check_folder(path)
    match = _HUB_ID.match(spec)
    if match is None or "--" in spec or ".." in spec:
        raise UsageError(
            f"unknown model {spec!r}: not a built-in name ({', '.join(BUILTIN_MODELS)}), not an existing "
            "folder and not a Hugging Face Hub id",
            "use a built-in name, a folder holding config.json + model.safetensors, or org/name (or org/name@revision)",
        )
    return download_from_hub(match["repo"], revision=match["revision"], offline=offline)


def load_model(spec: str, *, device: str | torch.device = "cpu",
               offline: bool | None = None) -> tuple[UNetGenerator, dict[str, Any]]:
    """The generator `spec` names (see `resolve_model`), in eval mode on `device`, with its config."""
    from recolor.nn.pretrained import load_generator

    return load_generator(resolve_model(spec, offline=offline), device=device)


def find_builtin(model: BuiltinModel) -> tuple[Path, str] | None:
    """Where this install has the weights of a built-in model, without any network call.

    Returns (folder, "package" | "cache") or None: the package folder first, then the copy that
    `recolor models pull` put into the HF cache at the pinned revision.
    """
    folder = model.package_folder
    if (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file():
        return folder, "package"
    if model.revision is None:
        return None
    cached = _cached_folder(model.repo_id, model.revision)
    return (cached, "cache") if cached is not None else None


def _resolve_builtin(model: BuiltinModel) -> Path:
    found = find_builtin(model)
    if found is not None:
        return found[0]
    if model.revision is None:
        raise ModelError(
            f"the built-in model {model.name!r} has no weights in this install yet (its trained weights "
            f"are to be published as {model.repo_id})",
            "use --model RUN_FOLDER (a folder written by `recolor train`) or --model org/name for a Hub repo",
        )
    raise ModelError(
        f"the built-in model {model.name!r} is not shipped in this install and has not been downloaded",
        f"run `recolor models pull {model.name}` once (from {model.repo_id}), or use --model RUN_FOLDER",
    )


def _check_folder(path: Path) -> Path:
    if path.is_file() and path.name in (CONFIG_NAME, WEIGHTS_NAME):
        path = path.parent
    if not path.is_dir():
        raise UsageError(f"--model {path} is a file, not a model folder",
                         "point --model at the folder holding config.json and model.safetensors")
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (path / name).is_file()]
    if missing:
        pickles = sorted(p.name for p in path.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        hint = (f" (recolor never loads pickles such as {', '.join(pickles)})" if pickles and WEIGHTS_NAME in missing
                else "")
        raise ModelError(f"model folder {path} has no {' or '.join(missing)}{hint}",
                         "a run folder gets model.safetensors when `recolor train` saves the model")
    return path


# ---------------------------------------------------------------------------------------- the Hub


def _hub_timeout() -> float:
    value = os.environ.get("HF_HUB_ETAG_TIMEOUT")
    try:
        return float(value) if value else DEFAULT_HUB_TIMEOUT
    except ValueError:
        return DEFAULT_HUB_TIMEOUT


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when the network, not the Hub, fails.

    huggingface_hub 2.x talks through httpx2, 1.x through httpx (neither subclasses OSError),
    0.x through requests (whose errors are OSErrors). OfflineModeIsEnabled is a ConnectionError.
    """
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _cached_folder(repo_id: str, revision: str | None) -> Path | None:
    """The HF-cache snapshot holding both files of `repo_id` at `revision`, or None; no network."""
    from huggingface_hub import try_to_load_from_cache

    paths = [try_to_load_from_cache(repo_id, name, revision=revision) for name in (CONFIG_NAME, WEIGHTS_NAME)]
    if not all(isinstance(p, str) for p in paths):
        return None
    folders = {Path(p).parent for p in paths}  # type: ignore[arg-type]
    return folders.pop() if len(folders) == 1 else None


def download_from_hub(repo_id: str, *, revision: str | None = None, sha256: str | None = None,
                      offline: bool | None = None, force: bool = False) -> Path:
    """Fetch `config.json` + `model.safetensors` of a Hub repo into the HF cache; returns the folder.

    `revision`: a branch, tag or commit (None: the default branch). `sha256`: the expected digest
    of model.safetensors, checked when given. `force` downloads again even when cached.
    Files already in the cache at a pinned commit are used without a network call.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = f"{repo_id}@{revision}" if revision else repo_id
    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    cached = None if force else _cached_folder(repo_id, revision)
    pinned = revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision) is not None
    if cached is not None and (offline or pinned):
        return _verified(cached, sha256, label)
    if offline:
        raise ModelError(f"{label} is neither a local folder nor in the Hugging Face cache, and offline mode is on "
                         "(HF_HUB_OFFLINE)",
                         "unset HF_HUB_OFFLINE to download it from the Hub, or use --model with a local folder")

    endpoint = constants.ENDPOINT
    timeout = _hub_timeout()
    way_out = ("check the connection; or run offline with a local folder (--model RUN_FOLDER) or with "
               "what is cached (HF_HUB_OFFLINE=1)")
    # One metadata request without retries: the client's own retry loop would take ~23 s here.
    try:
        metadata = get_hf_file_metadata(hf_hub_url(repo_id, CONFIG_NAME, revision=revision, endpoint=endpoint),
                                        timeout=timeout, endpoint=endpoint)
    except GatedRepoError:
        raise ModelError(f"Hub repo {repo_id} is gated", "accept its terms on the Hub and log in with "
                         "`hf auth login`") from None
    except RepositoryNotFoundError:
        raise UsageError(f"unknown model {label!r}: no local folder of that name and no such Hub repo at {endpoint}",
                         "check the spelling; for a private repo log in with `hf auth login`") from None
    except RevisionNotFoundError:
        raise UsageError(f"Hub repo {repo_id} has no revision {revision!r}",
                         "use a branch, tag or commit of that repo") from None
    except RemoteEntryNotFoundError:
        raise ModelError(f"Hub repo {label} has no {CONFIG_NAME}: it is not a recolor model",
                         "use a repo written from a recolor run folder") from None
    except HfHubHTTPError as error:
        if cached is not None:
            return _verified(cached, sha256, label)
        status = error.response.status_code if error.response is not None else "?"
        raise NetworkUnavailableError(f"the Hugging Face Hub at {endpoint} answered HTTP {status} for {label}",
                                      way_out) from None
    except OfflineModeIsEnabled:
        raise ModelError(f"Hub model {label} is not cached and offline mode is on", "unset HF_HUB_OFFLINE") from None
    except _transport_errors() as error:
        if cached is not None:
            return _verified(cached, sha256, label)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise NetworkUnavailableError(f"cannot reach the Hugging Face Hub at {endpoint} to fetch {label} ({reason})",
                                      way_out) from None

    # Fetch both files at the commit the first answer named, so they belong together even if a
    # branch moves in between.
    commit = metadata.commit_hash or revision
    paths = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths.append(Path(hf_hub_download(repo_id, name, revision=commit, etag_timeout=timeout,
                                              endpoint=endpoint, force_download=force,
                                              library_name="recolor")))
        except RemoteEntryNotFoundError:
            raise ModelError(f"Hub repo {label} has no {name} (recolor never loads pickles such as "
                             "pytorch_model.bin)", "use a repo written from a recolor run folder") from None
        except (HfHubHTTPError, *_transport_errors()) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise NetworkUnavailableError(f"downloading {name} of {label} from {endpoint} failed ({reason})",
                                          way_out) from None
    folder = paths[0].parent
    _download_export(repo_id, commit, timeout=timeout, endpoint=endpoint, force=force)
    if commit is not None and commit != (revision or "main"):
        # hf_hub_download stored the files under the commit; refs/REVISION lets the cache answer
        # `org/name[@revision]` offline later, as a download by branch name would have.
        _remember_ref(paths[0], revision or "main", commit)
    return _verified(folder, sha256, label)


def _download_export(repo_id: str, commit: str | None, *, timeout: float, endpoint: str, force: bool) -> None:
    """The repo's inference export too, when it has one (repos pushed before exports existed have
    none: apply then makes it once, locally). At the same commit as the weights, into their folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    from recolor.hub.exports import EXPORT_FILES, RECORD_NAME

    for name in (RECORD_NAME, *EXPORT_FILES):
        try:
            hf_hub_download(repo_id, name, revision=commit, etag_timeout=timeout, endpoint=endpoint,
                            force_download=force, library_name="recolor")
        except RemoteEntryNotFoundError:
            if name == RECORD_NAME:
                return  # no export in this repo
            raise ModelError(f"Hub repo {repo_id} has {RECORD_NAME} but no {name}",
                             "push the run again with `recolor push` (it publishes the whole export)") from None


def _remember_ref(config_path: Path, revision: str, commit: str) -> None:
    repo_cache = config_path.parent.parent.parent  # .../models--org--name/snapshots/COMMIT/config.json
    ref = repo_cache / "refs" / revision
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", revision) or ".." in revision:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def _verified(folder: Path, sha256: str | None, label: str) -> Path:
    if sha256 is not None:
        actual = file_sha256(folder / WEIGHTS_NAME)
        if actual != sha256.lower():
            raise ModelError(f"{folder / WEIGHTS_NAME} (from {label}) has sha256 {actual}, not the expected {sha256}",
                             "download it again with `recolor models pull NAME --force`")
    return folder


# ------------------------------------------------------------------------ the `models` commands


@dataclass(frozen=True)
class ModelStatus:
    """Where a built-in model's weights are in this install and whether they check out."""

    model: BuiltinModel
    location: str  # "package", "cache" or "missing"
    folder: Path | None
    sha256: str | None  # of the installed model.safetensors, when computed
    ok: bool | None  # None: nothing to check (missing, or no digest in the registry)
    problem: str | None = None


def model_status(model: BuiltinModel, *, check: bool = False) -> ModelStatus:
    """Where `model`'s weights are; with `check`, hash them and load them into the network."""
    found = find_builtin(model)
    if found is None:
        return ModelStatus(model, "missing", None, None, None)
    folder, location = found
    if not check:
        return ModelStatus(model, location, folder, None, None)
    digest = file_sha256(folder / WEIGHTS_NAME)
    if model.sha256 is not None and digest != model.sha256:
        return ModelStatus(model, location, folder, digest, False, f"sha256 {digest[:12]}… is not {model.sha256[:12]}…")
    problem = _export_problem(folder, digest, model.export_sha256) or _load_problem(folder)
    if problem is not None:
        return ModelStatus(model, location, folder, digest, False, problem)
    return ModelStatus(model, location, folder, digest, True if model.sha256 else None)


def _export_problem(folder: Path, weights_sha256: str, pinned: str | None) -> str | None:
    """Why the inference export beside the weights is not the registry's (None: it is, or nothing is pinned)."""
    from recolor.hub.exports import RECORD_NAME, check_export

    if pinned is None:
        return None
    record = folder / RECORD_NAME
    if not record.is_file():
        return f"{record} is missing"
    if (actual := file_sha256(record)) != pinned:
        return f"{RECORD_NAME} sha256 {actual[:12]}… is not {pinned[:12]}…"
    try:
        check_export(folder, weights_sha256)
    except ModelError as error:
        return error.cause
    return None


def verify_folder(folder: Path) -> tuple[str, str | None]:
    """(sha256, problem or None) of any model folder: the digest, whether the network loads it, and
    whether an inference export beside it (if any) matches the weights."""
    from recolor.hub.exports import EXPORT_FILES, RECORD_NAME, check_export

    digest = file_sha256(folder / WEIGHTS_NAME)
    if any((folder / name).exists() for name in (RECORD_NAME, *EXPORT_FILES)):
        try:
            check_export(folder, digest)
        except ModelError as error:
            return digest, error.cause
    return digest, _load_problem(folder)


def _load_problem(folder: Path) -> str | None:
    from recolor.nn.pretrained import load_generator

    try:
        load_generator(folder, device="cpu")
    except ModelError as error:
        return error.cause
    return None


def pull(spec: str, *, force: bool = False) -> Path:
    """Download a built-in model (at its pinned revision, sha256 checked) or any Hub id into the HF cache."""
    if spec in BUILTIN_MODELS:
        model = BUILTIN_MODELS[spec]
        if model.revision is None:
            raise ModelError(f"the built-in model {spec!r} is not published on the Hub yet ({model.repo_id} "
                             "has no pinned revision in this release)",
                             "train one with `recolor train` and use --model RUN_FOLDER")
        return download_from_hub(model.repo_id, revision=model.revision, sha256=model.sha256, offline=False,
                                 force=force)
    match = _HUB_ID.match(spec)
    if match is None or Path(spec).exists():
        raise UsageError(f"cannot pull {spec!r}: not a built-in name ({', '.join(BUILTIN_MODELS)}) nor a Hub id",
                         "use a built-in name, or org/name (or org/name@revision)")
    return download_from_hub(match["repo"], revision=match["revision"], offline=False, force=force)
