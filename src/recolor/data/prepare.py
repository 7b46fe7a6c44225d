"""`recolor prepare`: source photos -> square crops in a memory-mapped store, plus ab weights.

Steps: list the source files per split; find or create the split's plan in DATA (a new plan
takes over every crop and skip of an older plan whose file is unchanged); crop the files still to
do in worker processes, each writing its rows straight into the store; histogram ab over the
train split (val if only val was prepared) and compute the rebalancing weights; write the PNG
maps and, last, prepare.json.

Interrupting is safe at any point: rows are on disk as soon as a worker writes them, the status
array only says "stored" after that, and prepare.json (the mark of a finished folder) is removed
at the start and written at the end. Running the same command again does only the missing work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from recolor import __version__
from recolor.data import maps, preprocess
from recolor.data.rebalance import (DEFAULT_BINS, DEFAULT_SMOOTHING, ColorCounter,
                                    compute_ab_weights, gamut_mask, rebalance_weights)
from recolor.data.sources import (COCO_SOURCE, SPLIT_CHOICES, SourceFile, coco_files,
                                  default_cache_dir, folder_files)
from recolor.data.store import (PREPARE_JSON, FORMAT, SKIPPED, STORED, TODO, SplitStore,
                                read_prepare_json, write_json)
from recolor.errors import DataError, Interrupted, UsageError

CHUNK = 16  # files per task sent to a worker: large enough to amortise the IPC, small for progress
HIST_BATCH_PIXELS = 1 << 23  # pixels per ColorCounter.add: each call also passes 2^24 counters
# The histogram reads every second pixel in each direction: a quarter of the pixels, 4x faster, and
# a crop's neighbouring pixels carry nearly the same color anyway.
HIST_STRIDE = 2
HISTOGRAM_PNG = "ab-histogram.png"
WEIGHTS_PNG = "ab-weights.png"
NOTE_WEIGHTS_PNG = "ab-weights-note-formula.png"  # the literal formula, for comparison
MIN_SIZE = 16


def prepare(
    source: str | Sequence[str],
    out: str | os.PathLike[str],
    *,
    split: str = "all",
    max_samples: int | None = None,
    size: int = 256,
    val_fraction: float = 0.1,
    workers: int = 2,
    bins: int = DEFAULT_BINS,
    eps: float | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
    cache_dir: str | os.PathLike[str] | None = None,
    console: Console | None = None,
) -> dict:
    """Prepare `source` ("coco" or a folder, or several of them) into DATA=`out`; returns prepare.json.

    Several sources make one store: each keeps its own train/val layout or its own split by hash
    (the same split as when it is prepared alone, so its val photos stay held out), their keys are
    prefixed with a label per source (its folder name), prepare.json counts each source, and one set
    of ab weights comes from the whole train split.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    out = Path(out)
    if split not in SPLIT_CHOICES:
        raise UsageError(f"--split {split!r} is not one of {', '.join(SPLIT_CHOICES)}")
    if size < MIN_SIZE:
        raise UsageError(f"--size {size} is too small", f"use at least {MIN_SIZE} (256 in the note)")
    if max_samples is not None and max_samples < 1:
        raise UsageError(f"--max-samples {max_samples} must be at least 1")
    if bins < 2:
        raise UsageError(f"--bins {bins} must be at least 2", f"use {DEFAULT_BINS}")
    if eps is not None and eps <= 0:
        raise UsageError(f"--eps {eps} must be positive", "leave it out for Zhang et al.'s mixing")
    if smoothing < 0:
        raise UsageError(f"--smoothing {smoothing} must be 0 (none) or positive")
    splits = SPLIT_CHOICES[split]

    stores: dict[str, SplitStore] = {}  # the splits planned so far, for what Ctrl-C reports
    with _interruption_reported(out, stores):
        sources = [source] if isinstance(source, str) else list(source)
        if not sources:
            raise UsageError("no SOURCE given", "give coco or one or more folders of photos")
        labels = source_labels(sources)
        files: list[SourceFile] = []
        names: list[str] = []
        for item, label in zip(sources, labels):
            found, name = _source_files(item, splits=splits, val_fraction=val_fraction, max_samples=max_samples,
                                        cache_dir=cache_dir, workers=workers, console=console)
            if len(sources) > 1:
                # Keys stay unique across sources; the split was already decided on the source's own key.
                found = [SourceFile(f"{label}/{f.key}", f.path, f.split) for f in found]
            files += found
            names.append(name)
        source_name = names[0] if len(names) == 1 else " + ".join(names)

        out.mkdir(parents=True, exist_ok=True)
        previous = _previous_info(out)
        _check_compatible(out, previous, source=source_name, size=size)
        # From here until the end the folder is unfinished: readers get "run prepare again".
        (out / PREPARE_JSON).unlink(missing_ok=True)

        with _progress(console) as progress:
            for name in splits:
                entries = _entries([f for f in files if f.split == name])
                if not entries:
                    console.print(f"{name}: no source files, split left out")
                    continue
                store = _plan(out, name, entries, size=size, console=console)
                stores[name] = store
                _fill(store, entries, size=size, workers=workers, progress=progress)
        store_info, counts, skipped = _summary(stores, previous,
                                               kept=_kept_from_previous(out, previous, exclude=set(splits)))
        if not any(counts.values()):
            raise DataError(f"{source_name}: no usable color photo (all {len(skipped)} skipped)",
                            "check the skip reasons in the output; recolor needs color photos")

        histogram_split = "train" if counts.get("train") else "val"
        histogram = _histogram(out, store_info[histogram_split], bins=bins, previous=previous,
                               split=histogram_split, console=console)
        weights = compute_ab_weights(histogram, eps=eps, smoothing=smoothing)
        weights["split"] = histogram_split
        weights["pixel_stride"] = HIST_STRIDE
        _write_maps(out, weights)

        info = {
            "format": FORMAT,
            "recolor_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source_name,
            "sources": _per_source(sources, names, labels, store_info, skipped, out=out),
            "size": size,
            "crop": "short side resized to size (bicubic, antialiased), center square",
            "val_fraction": val_fraction,
            "max_samples": max_samples,
            "counts": {name: counts.get(name, 0) for name in ("train", "val") if name in store_info},
            "skipped": skipped,
            "store": store_info,
            "ab_weights": weights,
            "images": {"histogram": HISTOGRAM_PNG, "weights": WEIGHTS_PNG,
                       "note_formula_weights": NOTE_WEIGHTS_PNG},
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_json(out / PREPARE_JSON, info)
        _remove_other_plans(out, store_info)
        return info


@contextlib.contextmanager
def _interruption_reported(out: Path, stores: dict[str, SplitStore]) -> Iterator[None]:
    """Ctrl-C inside the block -> Interrupted, counting the photos of each split in `stores` done so far."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        done = []
        for name, store in stores.items():
            status = store.open_status("r")
            done.append(f"{name} {int((status != TODO).sum()):,} of {len(status):,} photos done")
        raise Interrupted(f"{out} is not finished: {', '.join(done) or 'no photo cropped yet'}",
                          "the same command resumes with only the missing work") from interrupt


# -------------------------------------------------------------------------------------- sources


def source_labels(sources: Sequence[str]) -> list[str]:
    """One short, unique label per source: its folder name ("coco" for COCO), numbered on a clash."""
    labels: list[str] = []
    for item in sources:
        base = COCO_SOURCE if item == COCO_SOURCE else (Path(item).expanduser().resolve().name or "source")
        label, number = base, 2
        while label in labels:
            label, number = f"{base}-{number}", number + 1
        labels.append(label)
    return labels


def _source_files(source: str, *, splits, val_fraction: float, max_samples: int | None, cache_dir, workers: int,
                  console: Console) -> tuple[list[SourceFile], str]:
    """The files of one SOURCE and the name prepare.json records for it."""
    if source == COCO_SOURCE:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        files = coco_files(cache, splits=splits, max_samples=max_samples,
                           download_threads=max(4, workers), log=console.print)
        return files, "coco-2017"
    root = Path(source).expanduser()
    if not root.exists():
        raise UsageError(f"SOURCE {source}: no such folder, and not 'coco'",
                         "give a folder of photos, or coco for COCO-2017")
    return folder_files(root, splits=splits, val_fraction=val_fraction, max_samples=max_samples), str(root.resolve())


def _per_source(sources: Sequence[str], names: list[str], labels: list[str], store_info: dict[str, dict],
                skipped: list[dict], *, out: Path) -> list[dict]:
    """prepare.json's `sources`: each source's name, key prefix and stored / skipped counts per split."""
    if len(sources) == 1:
        prefixes = {labels[0]: ""}
    else:
        prefixes = {label: f"{label}/" for label in labels}
    result = []
    for name, label in zip(names, labels):
        prefix = prefixes[label]
        counts = {}
        for split, entry in store_info.items():
            store = SplitStore(out, split, entry["plan"])
            status = store.open_status("r")
            keys = [e[0] for e in store.read_files()["files"]]
            counts[split] = int(sum(1 for row, key in enumerate(keys)
                                    if key.startswith(prefix) and status[row] == STORED))
        result.append({"source": name, "label": label, "key_prefix": prefix, "counts": counts,
                       "skipped": sum(1 for item in skipped if item["file"].startswith(prefix))})
    return result


# ---------------------------------------------------------------------------------------- plans


def _entries(files: list[SourceFile]) -> list[list]:
    entries = []
    for f in files:
        stat = f.path.stat()
        entries.append([f.key, stat.st_size, stat.st_mtime_ns, str(f.path)])
    return entries


def _previous_info(out: Path) -> dict | None:
    try:
        return read_prepare_json(out)
    except DataError:
        return None


def _check_compatible(out: Path, previous: dict | None, *, source: str, size: int) -> None:
    sizes = {store.read_files()["size"] for name in ("train", "val")
             for store in SplitStore.existing(out, name)}
    if previous is not None:
        sizes.add(previous["size"])
        if previous["source"] != source:
            raise UsageError(f"{out} holds data prepared from {previous['source']}",
                             "use another --out folder for another source")
    other = sizes - {size}
    if other:
        raise UsageError(f"{out} holds crops of {other.pop()} px, not {size}",
                         "use another --out folder, or the same --size as before")


def _plan(out: Path, split: str, entries: list[list], *, size: int, console: Console) -> SplitStore:
    """The store for exactly these files: resumed if it exists, else created from older plans."""
    older = SplitStore.existing(out, split)
    for store in older:
        if store.read_files()["files"] == entries:
            done = int((store.open_status("r") != TODO).sum())
            if done == len(entries):
                console.print(f"{split}: all {done:,} files already done")
            else:
                console.print(f"{split}: resuming, {done:,} of {len(entries):,} files already done")
            return store
    store = SplitStore.create(out, split, entries=entries, size=size)
    carried = sum(_carry_over(old, store, entries) for old in older)
    if carried:
        console.print(f"{split}: {carried:,} of {len(entries):,} files taken over unchanged "
                      "from the earlier run")
    return store


def _carry_over(old: SplitStore, new: SplitStore, entries: list[list]) -> int:
    """Copy the crops and skips of unchanged files (same key, bytes, mtime) from `old` to `new`."""
    old_rows = {tuple(e[:3]): row for row, e in enumerate(old.read_files()["files"])}
    old_status, new_status = old.open_status("r"), new.open_status("r+")
    old_images, new_images = old.open_images("r"), new.open_images("r+")
    reasons = old.read_skipped()
    copied, skips = 0, []
    for row, entry in enumerate(entries):
        old_row = old_rows.get(tuple(entry[:3]))
        if old_row is None or new_status[row] != TODO:
            continue
        if old_status[old_row] == STORED:
            new_images[row] = old_images[old_row]
            new_status[row] = STORED
            copied += 1
        elif old_status[old_row] == SKIPPED and entry[0] in reasons:
            skips.append((row, entry[0], reasons[entry[0]]))
    new_images.flush()
    if skips:
        new.append_skipped([(key, reason) for _, key, reason in skips])
        for row, _, _ in skips:
            new_status[row] = SKIPPED
    new_status.flush()
    return copied + len(skips)


def _summary(stores: dict[str, SplitStore], previous: dict | None, *, kept: dict[str, dict]
             ) -> tuple[dict[str, dict], dict[str, int], list[dict]]:
    """prepare.json's store, counts and skipped, for the splits of this run and those kept."""
    store_info: dict[str, dict] = dict(kept)
    counts: dict[str, int] = {}
    skipped: list[dict] = []
    for name, store in stores.items():
        status = store.open_status("r")
        store_info[name] = {"plan": store.plan, "images": store.images_path.name,
                            "status": store.status_path.name, "files": store.files_path.name,
                            "rows": int(len(status))}
        counts[name] = int((status == STORED).sum())
        reasons = store.read_skipped()
        keys = [e[0] for e in store.read_files()["files"]]
        skipped += [{"file": keys[row], "split": name, "reason": reasons[keys[row]]}
                    for row in np.flatnonzero(status == SKIPPED)]
    for name in kept:
        counts[name] = previous["counts"][name]
        skipped += [s for s in previous.get("skipped", []) if s.get("split") == name]
    return store_info, counts, skipped


def _kept_from_previous(out: Path, previous: dict | None, *, exclude: set[str]) -> dict[str, dict]:
    """Splits of the previous prepare.json not prepared in this run, whose store is still there."""
    if previous is None:
        return {}
    kept = {}
    for name, entry in previous.get("store", {}).items():
        if name not in exclude and SplitStore(out, name, entry["plan"]).exists():
            kept[name] = entry
    return kept


def _remove_other_plans(out: Path, store_info: dict[str, dict]) -> None:
    for name in ("train", "val"):
        for store in SplitStore.existing(out, name):
            if store_info.get(name, {}).get("plan") != store.plan:
                store.remove()


# ------------------------------------------------------------------------------------- cropping


def _progress(console: Console, *, skips: bool = True) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if skips:
        columns.append(TextColumn("{task.fields[skipped]} skipped"))
    return Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _fill(store: SplitStore, entries: list[list], *, size: int, workers: int, progress: Progress) -> None:
    """Crop every file whose status is still TODO into the store, over `workers` processes."""
    status = store.open_status("r+")
    todo = np.flatnonzero(status == TODO)
    skipped = int((status == SKIPPED).sum())
    task = progress.add_task(f"{store.split}: cropping to {size} px", total=len(entries),
                             completed=len(entries) - len(todo), skipped=skipped)
    chunks = [[(int(row), entries[row][3]) for row in todo[i:i + CHUNK]]
              for i in range(0, len(todo), CHUNK)]
    images_path = str(store.images_path)
    last_flush = time.monotonic()

    def record(results: list[tuple[int, str | None]]) -> None:
        nonlocal last_flush, skipped
        skips = [(row, reason) for row, reason in results if reason is not None]
        if skips:
            store.append_skipped([(entries[row][0], reason) for row, reason in skips])
        for row, reason in results:
            status[row] = STORED if reason is None else SKIPPED
        skipped += len(skips)
        progress.update(task, advance=len(results), skipped=skipped)
        if time.monotonic() - last_flush > 2.0:
            status.flush()
            last_flush = time.monotonic()

    try:
        if workers == 0 or len(chunks) <= 1:
            # In this process, one file at a time: an interrupt loses no finished crop.
            for chunk in chunks:
                for item in chunk:
                    record(preprocess.process_chunk(images_path, [item], size))
            preprocess.close_stores()
        else:
            _run_pool(chunks, images_path, size=size, workers=workers, record=record)
    finally:
        status.flush()


def _run_pool(chunks, images_path: str, *, size: int, workers: int, record) -> None:
    # spawn: the workers start clean (no copy of torch's threads from this process) on every OS.
    # multiprocessing.Pool rather than ProcessPoolExecutor: on an interrupt, terminate() stops the
    # workers at once, where the executor's shutdown can wait forever on busy workers. A row a
    # worker was writing is not marked stored, so it is simply done again next time.
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=preprocess.ignore_interrupts)
    try:
        tasks = ((images_path, chunk, size) for chunk in chunks)
        for results in pool.imap_unordered(preprocess.process_chunk_args, tasks):
            record(results)
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


# ------------------------------------------------------------------------------------ histogram


def _histogram(out: Path, entry: dict, *, bins: int, previous: dict | None, split: str,
               console: Console) -> np.ndarray:
    """ab counts (bins, bins) over the stored crops of one split, reused when nothing changed."""
    old = (previous or {}).get("ab_weights") or {}
    if (old.get("bins") == bins and old.get("split") == split and old.get("pixel_stride") == HIST_STRIDE
            and (previous or {}).get("store", {}).get(split, {}).get("plan") == entry["plan"]):
        return np.asarray(old["histogram"], dtype=np.int64)
    store = SplitStore(out, split, entry["plan"])
    rows = np.flatnonzero(store.open_status("r") == STORED)
    images = store.open_images("r")
    pixels = len(range(0, images.shape[1], HIST_STRIDE)) ** 2
    batch_rows = max(1, HIST_BATCH_PIXELS // pixels)
    counter = ColorCounter()
    with _progress(console, skips=False) as progress:
        task = progress.add_task(f"{split}: ab histogram", total=len(rows))
        for start in range(0, len(rows), batch_rows):
            batch = images[rows[start:start + batch_rows]][:, ::HIST_STRIDE, ::HIST_STRIDE]
            counter.add(torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2))
            progress.update(task, advance=len(batch))
        return counter.histogram(bins).numpy()


def _write_maps(out: Path, weights: dict) -> None:
    edges = np.asarray(weights["bin_edges"])
    histogram = np.asarray(weights["histogram"])
    mask = gamut_mask(weights["bins"]) | (histogram > 0)
    maps.save_png(maps.render_map(histogram, edges=edges, mask=mask, log=True,
                                  title=f"ab histogram of {weights['split']} (pixels, log scale)"),
                  out / HISTOGRAM_PNG)
    maps.save_png(maps.render_map(np.asarray(weights["weights"]), edges=edges, mask=mask,
                                  title=f"ab weight, eps {weights['eps']:.3g}, "
                                        f"smoothing {weights['smoothing_sigma_ab']:g}"),
                  out / WEIGHTS_PNG)
    note = weights["note_formula"]
    literal = rebalance_weights(histogram, eps=note["eps"])
    maps.save_png(maps.render_map(literal, edges=edges, mask=mask,
                                  title=f"ab weight, note's formula as is (eps {note['eps']:g})"),
                  out / NOTE_WEIGHTS_PNG)
