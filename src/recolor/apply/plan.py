"""Planning an apply run: INPUT files, folders and globs -> jobs, each with its output path (and its
before/after image), never an input and never inside an input folder a later run would read.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recolor.errors import UsageError
from recolor.io.photo import SUPPORTED_SUFFIXES
from recolor.io.video import VIDEO_FORMAT_SUFFIXES, VIDEO_SUFFIXES, is_video

FORMAT_SUFFIXES = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
# Photo formats convert photos and video formats videos; either kind keeps its own with the other.
OUTPUT_FORMATS = ("same", *FORMAT_SUFFIXES, *VIDEO_FORMAT_SUFFIXES)
COMPARE_FOLDER = "compare"


@dataclass(frozen=True)
class Job:
    """One input file and where its result (and its before/after image) go."""

    source: Path
    output: Path
    compare: Path | None = None


@dataclass
class Plan:
    """What an apply run will do: `jobs` to colorize, `skipped` whose output already exists."""

    out: Path
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _walk(folder: Path, *, recursive: bool, exclude: Path) -> list[Path]:
    """Image and video files under `folder` (by suffix), sorted; hidden files and folders and `exclude` skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        # Pruning in place keeps os.walk out of hidden folders and the output folder.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (root_path / d).resolve() != exclude)
        if not recursive:
            dirs[:] = []
        for name in sorted(files):
            path = root_path / name
            if not name.startswith(".") and (path.suffix.lower() in SUPPORTED_SUFFIXES or is_video(path)):
                found.append(path)
    return found


def _expand(inputs: Sequence[str]) -> list[Path]:
    """INPUT arguments -> existing paths; globs are expanded here for shells (and quotes) that don't."""
    paths = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.exists():
            paths.append(path)
            continue
        if any(char in text for char in "*?["):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise UsageError(f"no file matches {text!r}", "check the pattern")
            paths.extend(Path(match) for match in matches)
            continue
        raise UsageError(f"input {text} does not exist", "check the path")
    return paths


def default_out(inputs: Sequence[Path], cwd: Path | None = None) -> Path:
    """Where outputs go without --out.

    One folder INPUT: `FOLDER-colorized` beside it, so that folders colorized one after another
    never share an output folder (where a photo of the second would be skipped as done because
    the first had one of the same name). Other inputs: `./colorized`, unless that lies inside an
    input folder: then `FOLDER-colorized` beside it.
    """
    if len(inputs) == 1 and inputs[0].is_dir():
        return _beside(inputs[0].resolve())
    cwd = (cwd or Path.cwd()).resolve()
    candidate = cwd / "colorized"
    folders = sorted((p.resolve() for p in inputs if p.is_dir()), key=lambda p: len(p.parts))
    for folder in folders:
        if candidate.is_relative_to(folder):
            return _beside(folder)
    return candidate


def _beside(folder: Path) -> Path:
    return folder.parent / f"{folder.name or 'input'}-colorized"


class _Names:
    """Hands out output paths that never collide (case-insensitively), adding -2, -3, ... to stems."""

    def __init__(self, reserved: Iterable[Path] = ()) -> None:
        self._taken = {str(p).lower() for p in reserved}

    def claim(self, path: Path) -> Path:
        candidate, number = path, 1
        while str(candidate).lower() in self._taken:
            number += 1
            candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        self._taken.add(str(candidate).lower())
        return candidate


def _compare_folder(relatives: Iterable[Path]) -> str:
    """`compare`, or `compare-2`, ... when an input folder of that name is mirrored into OUT too."""
    used = {relative.parts[0].lower() for relative in relatives if relative.parts}
    name, number = COMPARE_FOLDER, 1
    while name.lower() in used:
        number += 1
        name = f"{COMPARE_FOLDER}-{number}"
    return name


def plan_jobs(inputs: Sequence[str], *, out: Path | None = None, recursive: bool = True, format: str = "same",
              suffix: str = "", overwrite: bool = False, compare: bool = False) -> Plan:
    """Map INPUT files, folders and globs to output paths under `out` (default: see `default_out`).

    One folder INPUT: its contents go straight into `out`, sub-folders kept. Several INPUTs: a
    folder goes to `out/FOLDER/...` (two called `photos`: photos/ and photos-2/), a file to
    `out/NAME`. The output's stem gets `suffix`; its extension is the input's (`format="same"`,
    GIF -> PNG) or the format's. With `compare`, each output's before/after image is
    `out/compare/<same sub-folder>/STEM.jpg`. Clashing names get -2, -3, ...; no output is ever an
    input file, nor lands inside an input folder that a later run would read it from. Raises
    UsageError when the inputs name no image at all.
    """
    if format not in OUTPUT_FORMATS:
        raise UsageError(f"unknown output format {format!r}", f"use one of {', '.join(OUTPUT_FORMATS)}")
    paths = _expand(inputs)
    out = (out or default_out(paths)).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder", "name a folder (it is created if missing)")
    one_folder = len(paths) == 1 and paths[0].is_dir()
    sources: list[tuple[Path, Path]] = []  # (file, folder it goes to relative to out)
    bases = _Names()
    # Folder inputs that a later run would read an output back from: all but those holding `out`,
    # which is skipped when they are read.
    exposed: list[Path] = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            base = Path() if one_folder else bases.claim(Path(root.name or "input"))
            # An `out` inside the folder holds an earlier run's outputs (a link may lead there too).
            out_inside = out != root and out.is_relative_to(root)
            if not out_inside:
                exposed.append(root)
            for file in _walk(path, recursive=recursive, exclude=out):
                if not (out_inside and file.resolve().is_relative_to(out)):
                    sources.append((file, base / file.parent.relative_to(path)))
        else:  # a file named on the command line is taken even inside `out`; see the check below
            sources.append((path, Path()))
    seen: set[Path] = set()
    unique = []
    for file, relative in sources:
        if file.resolve() not in seen:
            seen.add(file.resolve())
            unique.append((file, relative))
    if not unique:
        raise UsageError(f"no image or video files found in {', '.join(inputs)}",
                         f"recolor reads {', '.join(sorted(SUPPORTED_SUFFIXES | VIDEO_SUFFIXES))}"
                         + ("" if recursive else "; --recursive also looks into sub-folders"))

    plan = Plan(out=out)
    names = _Names(reserved=[out / "index.html"])
    compare_folder = out / _compare_folder(relative for _, relative in unique)
    gifs = 0
    for file, relative in unique:
        video = is_video(file)
        extension = (VIDEO_FORMAT_SUFFIXES if video else FORMAT_SUFFIXES).get(format, file.suffix.lower())
        if extension == ".gif":
            extension, gifs = ".png", gifs + 1
        output = names.claim(out / relative / f"{file.stem}{suffix}{extension}")
        if output.resolve() in seen:
            raise UsageError(f"the output {output} would overwrite an input", "choose another --out or a --suffix")
        inside = next((folder for folder in exposed if output.is_relative_to(folder)), None)
        if inside is not None:
            raise UsageError(f"the output {output} would land in the input folder {inside}, where the next run "
                             "would read it as an input", "choose an --out outside the input folder")
        preview = names.claim(compare_folder / relative / f"{output.stem}.jpg") if compare and not video else None
        job = Job(source=file, output=output, compare=preview)
        done = output.exists() and (preview is None or preview.exists())
        (plan.skipped if done and not overwrite else plan.jobs).append(job)
    if gifs:
        plan.notes.append(f"{gifs} GIF input(s) will be written as PNG (GIF holds only 256 colors)")
    return plan


def output_format_for(format: str) -> str | None:
    """The writer's format for `--format` (None: from each output's suffix, also for video formats)."""
    return {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF"}.get(format)
