"""recolor prepare from a folder: the split, the crops, the skip report, resuming, the store, the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from recolor.cli import app
from recolor.data import preprocess
from recolor.data.prepare import prepare
from recolor.data.rebalance import ABWeights
from recolor.data.sources import folder_files, path_hash
from recolor.data.store import PreparedImages, read_prepare_json
from recolor.errors import DataError, UsageError

SIZE = 32
REAL_LOAD_CROP = preprocess.load_crop


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def _photo(path, *, width=48, height=40, seed=0, color=None):
    """A smooth color image (JPEG or PNG by suffix), different for each seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if color is not None:
        pixels = np.empty((height, width, 3), np.uint8)
        pixels[:] = color
    else:
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([x * 255 // width, y * 255 // height,
                           np.full_like(x, (37 * seed) % 256)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(pixels).save(path)
    return path


def _folder(root, count=12):
    for i in range(count):
        _photo(root / f"class{i % 3}" / f"p{i:02d}.jpg", seed=i)
    return root


# ----------------------------------------------------------------------------------------- source


def test_folder_split_is_a_stable_hash_split(tmp_path):
    root = _folder(tmp_path / "photos", count=30)
    files = folder_files(root, val_fraction=0.3)
    assert len(files) == 30
    for f in files:
        assert f.split == ("val" if path_hash(f.key) < 0.3 else "train")
    assert 0 < sum(f.split == "val" for f in files) < 30
    # New photos never move the old ones to the other split.
    _photo(root / "new" / "x.png", seed=99)
    again = {f.key: f.split for f in folder_files(root, val_fraction=0.3)}
    assert all(again[f.key] == f.split for f in files) and len(again) == 31


def test_folder_with_train_and_val_keeps_them(tmp_path):
    root = tmp_path / "photos"
    _photo(root / "train" / "a" / "1.jpg")
    _photo(root / "train" / "b" / "2.PNG")
    _photo(root / "val" / "3.webp")
    (root / "train" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden.jpg").write_bytes(b"")
    files = folder_files(root, val_fraction=0.9)
    assert {(f.key, f.split) for f in files} == {("train/a/1.jpg", "train"), ("train/b/2.PNG", "train"),
                                                 ("val/3.webp", "val")}
    assert [f.key for f in folder_files(root, splits=("val",))] == ["val/3.webp"]


def test_max_samples_takes_a_fixed_subset_across_classes(tmp_path):
    root = _folder(tmp_path / "photos", count=30)
    first = folder_files(root, val_fraction=0.0, max_samples=6)
    assert len(first) == 6
    assert [f.key for f in first] == [f.key for f in folder_files(root, val_fraction=0.0, max_samples=6)]
    assert len({f.key.split("/")[0] for f in first}) > 1


def test_empty_or_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no image files"):
        folder_files(tmp_path)
    with pytest.raises(UsageError, match="no such folder"):
        prepare(str(tmp_path / "missing"), tmp_path / "out", console=_quiet())


# ------------------------------------------------------------------------------------------ crops


def test_crop_is_the_center_square_resized():
    # 64 x 32: left quarter red, middle half green, right quarter blue -> the center square is green.
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:48] = (0, 255, 0)
    pixels[:, 48:] = (0, 0, 255)
    crop = preprocess.square_crop(pixels, 16)
    assert crop.shape == (16, 16, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[:, 2:-2], np.broadcast_to([0, 255, 0], (16, 12, 3)))
    # Shrinking 4x averages (antialiasing): a 1-px checkerboard becomes flat gray.
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    assert np.abs(preprocess.square_crop(checker, 16).astype(int) - 128).max() <= 2


def test_load_crop_skips_with_reasons(tmp_path):
    assert preprocess.load_crop(_photo(tmp_path / "ok.png", width=16, height=50), size=SIZE).shape == (32, 32, 3)
    cases = {
        "too small": _photo(tmp_path / "small.png", width=15, height=50),
        "grayscale": _photo(tmp_path / "gray.png", color=(90, 90, 90)),
        "nearly grayscale": _photo(tmp_path / "tinted.png", color=(100, 102, 99)),
    }
    for reason, path in cases.items():
        with pytest.raises(preprocess.Skip, match=reason):
            preprocess.load_crop(path, size=SIZE)
    (tmp_path / "cut.jpg").write_bytes(_photo(tmp_path / "full.jpg").read_bytes()[:200])
    with pytest.raises(preprocess.Skip, match="unreadable: truncated"):
        preprocess.load_crop(tmp_path / "cut.jpg", size=SIZE)


# -------------------------------------------------------------------------------- prepare + store


def test_prepare_folder_writes_store_report_and_weights(tmp_path, monkeypatch):
    monkeypatch.setattr("recolor.data.prepare.CHUNK", 2)  # several tasks, so the worker pool runs
    root = _folder(tmp_path / "photos", count=12)
    _photo(root / "gray.jpg", color=(128, 128, 128))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "data"
    info = prepare(str(root), out, size=SIZE, val_fraction=0.25, workers=2, console=_quiet())

    assert info == read_prepare_json(out)
    assert info["size"] == SIZE and info["source"] == str(root.resolve())
    assert sum(info["counts"].values()) == 12 and info["counts"]["val"] > 0
    assert {(s["file"], s["reason"].split(":")[0]) for s in info["skipped"]} == {
        ("gray.jpg", "grayscale"), ("broken.png", "unreadable")}

    for split in ("train", "val"):
        images = PreparedImages(out, split)
        assert len(images) == info["counts"][split] and images.size == SIZE
        sample = images[0]
        assert sample.dtype == torch.uint8 and sample.shape == (3, SIZE, SIZE)
        # The stored crop is exactly what preprocessing makes of the source file.
        expected = preprocess.load_crop(root / images.keys()[0], size=SIZE)
        assert torch.equal(sample, torch.from_numpy(expected.copy()).permute(2, 0, 1))

    loader = torch.utils.data.DataLoader(PreparedImages(out, "train"), batch_size=4, num_workers=1)
    assert next(iter(loader)).shape == (4, 3, SIZE, SIZE)

    weights = info["ab_weights"]
    assert np.asarray(weights["histogram"]).sum() == info["counts"]["train"] * (SIZE // 2) ** 2
    assert np.asarray(weights["weights"]).shape == (33, 33) and len(weights["bin_edges"]) == 34
    assert ABWeights.from_data_dir(out).weights.shape == (33, 33)
    for name in ("ab-histogram.png", "ab-weights.png"):
        assert Image.open(out / name).size[0] > 33 * 10


def _count_crops(monkeypatch):
    calls = []

    def counting(path, *, size):
        calls.append(str(path))
        return REAL_LOAD_CROP(path, size=size)

    monkeypatch.setattr(preprocess, "load_crop", counting)
    return calls


def test_interrupted_prepare_resumes_with_only_the_missing_work(tmp_path, monkeypatch):
    root = _folder(tmp_path / "photos", count=10)
    out = tmp_path / "data"
    calls = []

    def interrupted(path, *, size):
        if len(calls) == 6:
            raise KeyboardInterrupt
        calls.append(str(path))
        return REAL_LOAD_CROP(path, size=size)

    monkeypatch.setattr(preprocess, "load_crop", interrupted)
    result = CliRunner().invoke(app, ["prepare", str(root), "--out", str(out), "--size", str(SIZE), "--workers", "0",
                                      "--val-fraction", "0"])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"interrupted: {out} is not finished: train 6 of 10 photos done → the same command resumes with only the "
        "missing work")
    with pytest.raises(DataError, match="has not finished"):
        PreparedImages(out, "train")

    resumed = _count_crops(monkeypatch)
    info = prepare(str(root), out, size=SIZE, val_fraction=0.0, workers=0, console=_quiet())
    assert len(resumed) == 4 and not set(resumed) & set(calls)
    assert info["counts"] == {"train": 10}

    # Same as a prepare that was never interrupted.
    fresh = prepare(str(root), tmp_path / "fresh", size=SIZE, val_fraction=0.0, workers=0, console=_quiet())
    a, b = PreparedImages(out, "train"), PreparedImages(tmp_path / "fresh", "train")
    assert a.keys() == b.keys() and all(torch.equal(a[i], b[i]) for i in range(len(a)))
    assert fresh["ab_weights"]["histogram"] == info["ab_weights"]["histogram"]

    # A finished folder: running again crops nothing.
    before = len(resumed)
    assert prepare(str(root), out, size=SIZE, val_fraction=0.0, workers=0, console=_quiet())["counts"] == {"train": 10}
    assert len(resumed) == before


def test_new_and_changed_files_are_the_only_work_of_a_rerun(tmp_path, monkeypatch):
    root = _folder(tmp_path / "photos", count=8)
    out = tmp_path / "data"
    prepare(str(root), out, size=SIZE, val_fraction=0.0, workers=0, console=_quiet())
    _photo(root / "new.png", seed=50)
    _photo(root / "class0" / "p00.jpg", seed=51, width=60)  # rewritten: other bytes
    _photo(root / "tiny.png", width=8, height=8, seed=52)
    calls = _count_crops(monkeypatch)
    info = prepare(str(root), out, size=SIZE, val_fraction=0.0, workers=0, console=_quiet())
    assert sorted(p.rsplit("/", 1)[-1] for p in calls) == ["new.png", "p00.jpg", "tiny.png"]
    assert info["counts"] == {"train": 9}
    assert [s["file"] for s in info["skipped"]] == ["tiny.png"]
    assert len(list(out.glob("train-*.npy"))) == 2  # images + status of the one plan left


def test_prepared_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_prepare_json(tmp_path / "nope")
    with pytest.raises(DataError, match="not a prepared data folder") as error:
        read_prepare_json(tmp_path)
    assert "recolor prepare" in error.value.fix
    root = _folder(tmp_path / "photos", count=4)
    prepare(str(root), tmp_path / "data", size=SIZE, split="train", val_fraction=0.0, workers=0, console=_quiet())
    with pytest.raises(DataError, match="'val' was not prepared"):
        PreparedImages(tmp_path / "data", "val")
    with pytest.raises(UsageError, match="crops of 32 px"):
        prepare(str(root), tmp_path / "data", size=64, workers=0, console=_quiet())


def test_cli_prepare(tmp_path):
    root = _folder(tmp_path / "photos", count=6)
    _photo(root / "gray.png", color=(50, 50, 50))
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["prepare", str(root), "--out", str(out), "--size", "32", "--workers", "0",
                                      "--val-fraction", "0.2", "--bins", "17", "--eps", "0.001", "--smoothing", "0"])
    assert result.exit_code == 0, result.output
    assert "prepared" in result.output and "gray.png: grayscale" in result.output
    info = json.loads((out / "prepare.json").read_text())
    assert info["ab_weights"]["bins"] == 17 and info["ab_weights"]["eps"] == 0.001
    assert info["ab_weights"]["uniform_mix"] is None and sum(info["counts"].values()) == 6

    result = CliRunner().invoke(app, ["prepare", str(tmp_path / "nowhere"), "--out", str(out)])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_splits_prepared_one_at_a_time_are_both_kept(tmp_path):
    root = _folder(tmp_path / "photos", count=12)
    out = tmp_path / "data"
    first = prepare(str(root), out, size=SIZE, split="train", val_fraction=0.3, workers=0, console=_quiet())
    assert set(first["counts"]) == {"train"}
    both = prepare(str(root), out, size=SIZE, split="validation", val_fraction=0.3, workers=0, console=_quiet())
    assert both["counts"] == {"train": first["counts"]["train"], "val": 12 - first["counts"]["train"]}
    assert both["ab_weights"]["split"] == "train"
    assert both["ab_weights"]["histogram"] == first["ab_weights"]["histogram"]
    assert len(PreparedImages(out, "train")) + len(PreparedImages(out, "val")) == 12
