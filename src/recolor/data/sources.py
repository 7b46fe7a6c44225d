"""Where training photos come from: a folder of photos, or COCO-2017 through FiftyOne.

Both sources end as a list of `SourceFile`s, each assigned to the split "train" or "val":

- A folder: every file under it (recursively, hidden files and folders left out) whose suffix
  `recolor.io.read` reads. A folder holding `train/` and `val/` (or `validation/`) keeps that
  split; otherwise each file goes to val when the hash of its relative path falls below
  `val_fraction`, so the split never depends on the order of listing, and adding photos later
  never moves an existing photo to the other split.
- `coco`: the COCO-2017 train and validation images, downloaded by FiftyOne's
  `download_coco_dataset_split` into a cache folder. That function needs no MongoDB (importing
  `fiftyone.utils.coco` does not connect to one), which matters because stock FiftyOne installs
  without a working database on some systems.

`max_samples` keeps the files with the smallest path hashes (folder) or the smallest COCO image
ids: a subset that mixes the classes of a folder sorted by class, and that stays the same when the
run is repeated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from recolor.errors import DataError, NetworkUnavailableError, UsageError
from recolor.io.photo import SUPPORTED_SUFFIXES

SPLITS = ("train", "val")
# The CLI's --split values (FiftyOne's names) -> the splits prepared.
SPLIT_CHOICES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("val",),
    "all": SPLITS,
}
_VAL_FOLDER_NAMES = ("val", "validation")

COCO_SOURCE = "coco"
COCO_EXTRA_FIX = 'pip install "recolor-cli[coco]"'
COCO_HOST = "images.cocodataset.org"
_COCO_YEAR = "2017"
_COCO_SPLITS = {"train": "train", "val": "validation"}  # ours -> FiftyOne's
_COCO_ANNOTATION_FILES = {"train": "instances_train2017.json", "val": "instances_val2017.json"}
_COCO_ANNOTATIONS_MB = 241
_COCO_SPLIT_SIZES = {"train": 118_287, "val": 5_000}
_COCO_IMAGE_ZIPS = {"train": "18 GB", "val": "778 MB"}


@dataclass(frozen=True)
class SourceFile:
    """One source photo: `key` is its path relative to the source root, with forward slashes."""

    key: str
    path: Path
    split: str


def path_hash(key: str) -> float:
    """A stable number in [0, 1) for a relative path: the same on every machine and every run."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def default_cache_dir() -> Path:
    """$RECOLOR_CACHE, else $XDG_CACHE_HOME/recolor, else ~/.cache/recolor."""
    if os.environ.get("RECOLOR_CACHE"):
        return Path(os.environ["RECOLOR_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "recolor"


# -------------------------------------------------------------------------------------- folders


def _image_files(root: Path) -> list[Path]:
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                found.append(Path(folder) / name)
    return found


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _existing_layout(root: Path) -> dict[str, Path] | None:
    """{"train": root/train, "val": root/val} when the folder already has both, else None."""
    train = root / "train"
    val = next((root / name for name in _VAL_FOLDER_NAMES if (root / name).is_dir()), None)
    if train.is_dir() and val is not None:
        return {"train": train, "val": val}
    return None


def folder_files(
    root: Path,
    *,
    splits: Iterable[str] = SPLITS,
    val_fraction: float = 0.1,
    max_samples: int | None = None,
) -> list[SourceFile]:
    """The photos under `root` for the requested splits (see the module docstring)."""
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder", "give a folder of photos or 'coco'")
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"--val-fraction {val_fraction} is outside [0, 1)", "use e.g. 0.1")
    layout = _existing_layout(root)
    files: list[SourceFile] = []
    if layout is not None:
        for split, folder in layout.items():
            files += [SourceFile(_key(p, root), p, split) for p in _image_files(folder)]
    else:
        for path in _image_files(root):
            key = _key(path, root)
            files.append(SourceFile(key, path, "val" if path_hash(key) < val_fraction else "train"))
    if not files:
        raise UsageError(
            f"{root}: holds no image files",
            f"recolor reads {', '.join(sorted(SUPPORTED_SUFFIXES))} (searched recursively)",
        )
    return _select(files, splits=splits, max_samples=max_samples, order=lambda f: path_hash(f.key))


def _select(
    files: list[SourceFile],
    *,
    splits: Iterable[str],
    max_samples: int | None,
    order: Callable[[SourceFile], object],
) -> list[SourceFile]:
    """Keep the requested splits, at most `max_samples` per split (the first in `order`)."""
    chosen: list[SourceFile] = []
    for split in splits:
        in_split = [f for f in files if f.split == split]
        if max_samples is not None:
            in_split = sorted(in_split, key=order)[:max_samples]
        chosen += sorted(in_split, key=lambda f: f.key)
    return chosen


# ----------------------------------------------------------------------------------------- COCO


def _import_fiftyone_coco():
    # FiftyOne would otherwise try to send usage statistics; the user did not ask for that.
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        import fiftyone.utils.coco as fouc
    except ImportError as error:
        raise UsageError(
            f"SOURCE coco needs FiftyOne, which cannot be imported ({error})", COCO_EXTRA_FIX
        ) from error
    return fouc


def _check_reachable(timeout_s: float) -> None:
    """Fail within seconds, naming the fix, when COCO's server cannot be reached at all."""
    import requests  # installed with fiftyone

    url = f"http://{COCO_HOST}/"
    try:
        requests.head(url, timeout=(timeout_s, timeout_s), allow_redirects=False)
    except requests.RequestException as error:
        raise NetworkUnavailableError(
            f"cannot reach {COCO_HOST} to download COCO ({type(error).__name__})",
            "check the network connection or http_proxy, or prepare a local folder of photos "
            "instead: recolor prepare PATH/TO/PHOTOS --out DATA",
        ) from error


def _marker(root: Path, split: str) -> Path:
    return root / _COCO_SPLITS[split] / "recolor-download.json"


def _downloaded_for(root: Path, split: str) -> int:
    """The largest max_samples a finished download of `split` was asked for (0: none)."""
    try:
        return int(json.loads(_marker(root, split).read_text(encoding="utf-8"))["max_samples"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _coco_images(root: Path, split: str) -> list[Path]:
    folder = root / _COCO_SPLITS[split] / "data"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")


def coco_files(
    cache_dir: Path,
    *,
    splits: Iterable[str] = SPLITS,
    max_samples: int | None = None,
    download_threads: int = 8,
    log: Callable[[str], None] = print,
    timeout_s: float = 10.0,
) -> list[SourceFile]:
    """Download (once) and list COCO-2017 images of the requested splits.

    Everything lands in `cache_dir`/coco-2017: the annotations FiftyOne needs to know the image
    URLs (downloaded once as a 241 MB zip, then kept extracted in raw/), and the images of each
    split in train/data and validation/data. Images already there are not downloaded again.
    """
    root = cache_dir / f"coco-{_COCO_YEAR}"
    raw = root / "raw"
    scratch = root / "scratch"
    splits = tuple(splits)
    for split in splits:
        wanted = _COCO_SPLIT_SIZES[split] if max_samples is None else max_samples
        annotations = raw / _COCO_ANNOTATION_FILES[split]
        have = len(_coco_images(root, split))
        if annotations.is_file() and (have >= wanted or _downloaded_for(root, split) >= wanted):
            log(f"COCO {split}: {have:,} images already in {root} (annotations cached in {raw})")
            continue
        fouc = _import_fiftyone_coco()
        _check_reachable(timeout_s)
        if annotations.is_file():
            log(f"COCO {split}: annotations cached in {raw} (no download)")
        else:
            log(f"COCO {split}: downloading the {_COCO_ANNOTATIONS_MB} MB annotations zip once; "
                f"it is cached in {raw} for later runs")
        if max_samples is None:
            log(f"COCO {split}: the full split comes as one {_COCO_IMAGE_ZIPS[split]} zip")
        else:
            log(f"COCO {split}: downloading {wanted - have:,} images into {root}")
        _download_split(fouc, root, split, max_samples=max_samples, raw=raw, scratch=scratch,
                        threads=download_threads)
        # Remember that this many were asked for: a split with fewer images (val has 5,000) is
        # then not asked for again on every run.
        _marker(root, split).write_text(json.dumps({"max_samples": wanted}), encoding="utf-8")
    # The annotations are kept extracted in raw/, so the zips in scratch/ are not needed again.
    shutil.rmtree(scratch, ignore_errors=True)
    files = [SourceFile(f"{_COCO_SPLITS[split]}/{path.name}", path, split)
             for split in splits
             for path in _coco_images(root, split)[:max_samples]]
    if not files:
        raise DataError(f"{root}: COCO download produced no images", f"delete {root} and run again")
    return files


def _download_split(fouc, root: Path, split: str, *, max_samples: int | None, raw: Path,
                    scratch: Path, threads: int) -> None:
    import zipfile

    import requests
    from eta.core.web import WebSessionError  # FiftyOne downloads through eta

    try:
        fouc.download_coco_dataset_split(
            str(root / _COCO_SPLITS[split]), _COCO_SPLITS[split], year=_COCO_YEAR,
            max_samples=max_samples, raw_dir=str(raw), scratch_dir=str(scratch),
            num_workers=threads,
        )
    except (requests.RequestException, WebSessionError) as error:
        raise NetworkUnavailableError(
            f"COCO download from {COCO_HOST} failed: {error}",
            "check the network connection or http_proxy and run the same command again "
            "(finished files are kept)",
        ) from error
    except zipfile.BadZipFile as error:
        raise DataError(
            f"COCO download: a damaged zip in {scratch} ({error})",
            f"delete {scratch} and run again",
        ) from error
