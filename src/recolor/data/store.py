"""The prepared data folder on disk, and `PreparedImages`, the torch Dataset that reads it.

A prepared folder DATA holds, per split ("train", "val"), one *plan*: the list of source files
it was made from, identified by a hash of that list and the crop size, so files of another plan
never mix in:

    {split}-{plan}.npy            uint8 (N, S, S, 3) sRGB crops, one row per planned source file
    {split}-{plan}.status.npy     uint8 (N,): 0 to do, 1 stored, 2 skipped
    {split}-{plan}.files.json     the planned files: [key, bytes, mtime_ns, path] per row
    {split}-{plan}.skipped.jsonl  {"file": key, "reason": ...} per skipped file
    prepare.json                  what was prepared (written last: its presence means "finished")

The .npy files are plain NumPy arrays, memory-mapped: a sample is one contiguous S*S*3-byte read
(no decoding), so random access costs a page-cache copy. Rows of skipped files stay in the array as
unused zeros, which keeps the row of every file fixed while workers fill the array in parallel.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recolor.errors import DataError
from recolor.io.atomic import atomic_write

PREPARE_JSON = "prepare.json"
FORMAT = "recolor-prepared/1"
TODO, STORED, SKIPPED = 0, 1, 2
_PREPARE_FIX = "prepare it first: recolor prepare SOURCE --out {}"


def write_json(path: Path, data: object) -> None:
    """Write `data` as JSON atomically (readers see the old file or the whole new one)."""
    text = json.dumps(data, indent=1).encode("utf-8")
    atomic_write(path, lambda fp: fp.write(text))


def read_prepare_json(data_dir: str | os.PathLike[str]) -> dict:
    """DATA/prepare.json as a dict; DataError with a fix if DATA is not a finished prepared folder."""
    data_dir = Path(data_dir)
    path = data_dir / PREPARE_JSON
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder", _PREPARE_FIX.format(data_dir))
    if not path.is_file():
        if any(data_dir.glob("*.status.npy")):
            raise DataError(
                f"{data_dir}: recolor prepare has not finished here (no {PREPARE_JSON})",
                "run the same recolor prepare command again: it goes on where it stopped",
            )
        raise DataError(f"{data_dir}: not a prepared data folder (no {PREPARE_JSON})",
                        _PREPARE_FIX.format(data_dir))
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot be read ({error})",
                        "run the same recolor prepare command again") from error
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"{path}: not written by this version of recolor prepare",
                        f"prepare again into a new folder: recolor prepare SOURCE --out NEW_FOLDER")
    return info


def plan_id(entries: list[list], size: int) -> str:
    """12 hex digits naming the list of source files (key, bytes, mtime) and the crop size."""
    digest = hashlib.sha1(json.dumps([size, [e[:3] for e in entries]]).encode("utf-8"))
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class SplitStore:
    """The files of one plan of one split in DATA (see the module docstring)."""

    data_dir: Path
    split: str
    plan: str

    def _path(self, suffix: str) -> Path:
        return self.data_dir / f"{self.split}-{self.plan}{suffix}"

    @property
    def images_path(self) -> Path:
        return self._path(".npy")

    @property
    def status_path(self) -> Path:
        return self._path(".status.npy")

    @property
    def files_path(self) -> Path:
        return self._path(".files.json")

    @property
    def skipped_path(self) -> Path:
        return self._path(".skipped.jsonl")

    def all_paths(self) -> list[Path]:
        return [self.images_path, self.status_path, self.files_path, self.skipped_path]

    def exists(self) -> bool:
        # files.json is written last when a plan is created, so it marks a complete creation.
        return self.files_path.is_file() and self.images_path.is_file() and self.status_path.is_file()

    @classmethod
    def create(cls, data_dir: Path, split: str, *, entries: list[list], size: int) -> "SplitStore":
        """Allocate the arrays of a new plan (sparse on most file systems) and record its files."""
        store = cls(data_dir, split, plan_id(entries, size))
        shape = (max(1, len(entries)), size, size, 3)
        np.lib.format.open_memmap(store.images_path, mode="w+", dtype=np.uint8, shape=shape).flush()
        np.lib.format.open_memmap(store.status_path, mode="w+", dtype=np.uint8,
                                  shape=(len(entries),)).flush()
        store.skipped_path.unlink(missing_ok=True)
        write_json(store.files_path, {"split": split, "size": size, "files": entries})
        return store

    @classmethod
    def existing(cls, data_dir: Path, split: str) -> list["SplitStore"]:
        """The complete plans of `split` in DATA."""
        plans = []
        for path in sorted(data_dir.glob(f"{split}-*.files.json")):
            plan = path.name[len(split) + 1:-len(".files.json")]
            store = cls(data_dir, split, plan)
            if store.exists():
                plans.append(store)
        return plans

    def read_files(self) -> dict:
        return json.loads(self.files_path.read_text(encoding="utf-8"))

    def open_status(self, mode: str = "r+") -> np.ndarray:
        return np.load(self.status_path, mmap_mode=mode)

    def open_images(self, mode: str = "r") -> np.ndarray:
        return np.load(self.images_path, mmap_mode=mode)

    def read_skipped(self) -> dict[str, str]:
        """{file key: reason} of the files skipped so far."""
        if not self.skipped_path.is_file():
            return {}
        skipped = {}
        for line in self.skipped_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run; its file is still to do
            skipped[record["file"]] = record["reason"]
        return skipped

    def append_skipped(self, records: list[tuple[str, str]]) -> None:
        # Written (and flushed) before the status says "skipped", so a skipped status always has
        # its reason on disk.
        with self.skipped_path.open("a", encoding="utf-8") as fp:
            for key, reason in records:
                fp.write(json.dumps({"file": key, "reason": reason}) + "\n")
            fp.flush()
            os.fsync(fp.fileno())

    def remove(self) -> None:
        for path in self.all_paths():
            path.unlink(missing_ok=True)


class PreparedImages(torch.utils.data.Dataset):
    """The crops of one split of a prepared folder: uint8 tensors (3, S, S), sRGB, S = `size`.

    Reads from the memory-mapped store: no decoding, so one worker feeds thousands of samples
    per second. Safe to use with DataLoader workers (each opens its own map).
    """

    def __init__(self, data_dir: str | os.PathLike[str], split: str = "train") -> None:
        self.data_dir = Path(data_dir)
        info = read_prepare_json(self.data_dir)
        entry = info.get("store", {}).get(split)
        if entry is None:
            prepared = ", ".join(sorted(info.get("store", {}))) or "none"
            raise DataError(
                f"{self.data_dir}: split {split!r} was not prepared (prepared: {prepared})",
                f"run recolor prepare with --split {'validation' if split == 'val' else split} "
                f"or --split all into {self.data_dir}",
            )
        self.split = split
        self.size: int = int(info["size"])
        self._store = SplitStore(self.data_dir, split, entry["plan"])
        if not self._store.exists():
            raise DataError(f"{self._store.images_path}: missing from the prepared folder",
                            "run the same recolor prepare command again")
        self._rows = np.flatnonzero(self._store.open_status("r") == STORED)
        if len(self._rows) != info["counts"][split]:
            raise DataError(
                f"{self.data_dir}: the {split} store holds {len(self._rows)} images but "
                f"{PREPARE_JSON} says {info['counts'][split]}",
                "run the same recolor prepare command again",
            )
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._images is None:
            self._images = self._store.open_images("r")
        row = self._images[self._rows[index]]
        return torch.from_numpy(np.ascontiguousarray(row.transpose(2, 0, 1)))

    def keys(self) -> list[str]:
        """The source file of each sample (its path relative to the source), in dataset order."""
        files = self._store.read_files()["files"]
        return [files[row][0] for row in self._rows]

    def __getstate__(self) -> dict:
        # A memory map does not pickle; each DataLoader worker opens its own.
        state = self.__dict__.copy()
        state["_images"] = None
        return state
