"""recolor.evaluate and `recolor eval`: the protocol, the gray baseline by hand, skipped files, the formats."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor import evaluate as ev
from recolor.cli import app
from recolor.errors import ModelError, NetworkUnavailableError
from recolor.nn import UNetGenerator
from recolor.nn.pretrained import save_generator

JSON_KEYS = {"data", "size", "n", "ground_truth", "rows", "unavailable", "skipped", "seconds"}
ROW_KEYS = {"model", "psnr", "ssim", "colorfulness", "delta_cf", "vgg", "lpips", "fid", "images_per_s"}


def _photos(folder, count=4, size=(40, 48), seed=0):
    """Random color photos with a smooth part (so SSIM and colorfulness are not noise only)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = size
        ramp = np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.5, 0.1])
        image = 0.6 * ramp + 0.4 * rng.random((h, w, 3)) * 255
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"photo_{i}.png")
    return folder


@pytest.fixture()
def tiny_model(tmp_path):
    torch.manual_seed(0)
    return save_generator(UNetGenerator(width=8), tmp_path / "tiny")


def _srgb_encode(linear: float) -> float:
    return 1.055 * linear ** (1 / 2.4) - 0.055 if linear > 0.0031308 else 12.92 * linear


def test_gray_baseline_of_a_two_color_image_by_hand(tmp_path):
    # Left half pure red, right half white, 32 x 32: no resize at --size 32.
    image = np.full((32, 32, 3), 255, np.uint8)
    image[:, :16] = (255, 0, 0)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(image).save(folder / "two_colors.png")

    report = ev.evaluate(folder, size=32, perceptual=False)

    # With ab = 0 a color keeps its luminance Y and becomes gray: red's Y is 0.212671 (sRGB
    # primaries), so the gray baseline paints it sRGB g = encode(0.212671) ~ 0.4985 on all three
    # channels. White stays white. Squared error per red pixel: ((1 - g)² + g² + g²) / 3.
    g = _srgb_encode(0.212671)
    mse = 0.5 * ((1 - g) ** 2 + 2 * g**2) / 3
    gray = report.rows[0]
    assert gray.model == "gray"
    assert report.n == 1
    assert gray.psnr == pytest.approx(10 * math.log10(1 / mse), abs=0.01)
    # Ground truth colorfulness by hand: rg is 255 or 0, yb is 127.5 or 0, half the pixels each.
    truth = math.hypot(127.5, 63.75) * 1.3
    assert report.ground_truth_colorfulness == pytest.approx(truth, rel=1e-4)
    assert gray.colorfulness == pytest.approx(0.0, abs=0.05)
    assert gray.delta_cf == pytest.approx(-truth, abs=0.05)
    assert 0 < gray.ssim < 1
    assert gray.images_per_s > 0


def test_unreadable_and_grayscale_images_are_left_out_and_named(tmp_path):
    folder = _photos(tmp_path / "photos", count=3)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(folder / "gray.png")
    nested = folder / "deeper" / "still"
    _photos(nested, count=1, seed=5)

    report = ev.evaluate(folder, size=32, perceptual=False, batch_size=2)

    assert report.n == 4  # 3 + 1 nested; the broken and the gray one are out
    reasons = {item["file"].rsplit("/", 1)[-1]: item["reason"] for item in report.skipped}
    assert set(reasons) == {"broken.jpg", "gray.png"}
    assert reasons["gray.png"] == "grayscale"
    assert reasons["broken.jpg"].startswith("unreadable")
    assert "broken.jpg" not in reasons["broken.jpg"]  # the file is named once, in "file"


def test_a_model_row_is_deterministic_and_independent_of_the_batch_size(tmp_path, tiny_model):
    folder = _photos(tmp_path / "photos", count=5)
    first = ev.evaluate(folder, [str(tiny_model)], size=32, perceptual=False, batch_size=2)
    second = ev.evaluate(folder, [str(tiny_model)], size=32, perceptual=False, batch_size=5, workers=1)
    assert [row.model for row in first.rows] == ["gray", str(tiny_model)]
    for a, b in zip(first.rows, second.rows):
        for column in ("psnr", "ssim", "colorfulness", "delta_cf"):
            assert getattr(a, column) == pytest.approx(getattr(b, column), rel=1e-5)
    model = first.rows[1]
    # An untrained generator predicts some color: not the gray row's numbers.
    assert model.colorfulness > first.rows[0].colorfulness + 0.1
    assert model.psnr != pytest.approx(first.rows[0].psnr, abs=1e-3)


def test_photos_are_cropped_as_prepare_crops_them(tmp_path):
    # A 2:1 photo, black on the sides and a colored square in the middle: the short side is
    # resized and the center square kept, so the crop is the square alone (squashing the whole
    # photo would bring the black sides in).
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = (200, 120, 40)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(image).save(folder / "wide.png")
    dataset = ev.open_images(folder, size=32)
    index, crop, reason = dataset[0]
    assert reason is None and crop.dtype == torch.uint8 and crop.shape == (3, 32, 32)
    inner = crop[:, :, 1:-1].float()
    assert (inner - torch.tensor([200.0, 120.0, 40.0]).view(3, 1, 1)).abs().max() <= 8


def test_a_prepared_folder_scores_its_val_split_exactly_as_the_photos_themselves(tmp_path):
    from rich.console import Console

    from recolor.data.prepare import prepare

    source = tmp_path / "source"
    _photos(source / "train", count=2, seed=1)
    _photos(source / "val", count=3, size=(48, 40), seed=2)
    prepared = tmp_path / "data"
    prepare(str(source), prepared, size=32, workers=1, console=Console(file=io.StringIO()))

    from_store = ev.evaluate(prepared, size=32, perceptual=False)
    from_files = ev.evaluate(source / "val", size=32, perceptual=False)
    assert from_store.n == from_files.n == 3
    for column in ("psnr", "ssim", "colorfulness", "delta_cf"):
        assert getattr(from_store.rows[0], column) == pytest.approx(getattr(from_files.rows[0], column), rel=1e-6)
    assert from_store.ground_truth_colorfulness == pytest.approx(from_files.ground_truth_colorfulness, rel=1e-6)


def test_limit_spreads_the_subset_over_the_whole_set(tmp_path):
    folder = _photos(tmp_path / "photos", count=6)
    dataset = ev.open_images(folder, size=32, limit=3)
    names = [Path(dataset.name(index)).name for index in range(len(dataset))]
    all_names = [Path(ev.open_images(folder, size=32).name(index)).name for index in range(6)]
    assert names == [all_names[0], all_names[2], all_names[4]]
    report = ev.evaluate(folder, size=32, perceptual=False, limit=3)
    assert report.n == 3


def test_perceptual_metric_unavailable_is_said_once_fast_and_the_column_is_null(tmp_path, monkeypatch):
    import recolor.nn.vgg as vgg

    def no_network(*args, **kwargs):
        raise NetworkUnavailableError("cannot resolve download.pytorch.org", "some fix for training")

    monkeypatch.setattr(vgg, "VGGFeatures", no_network)
    real_find_spec = ev.importlib.util.find_spec
    monkeypatch.setattr(ev.importlib.util, "find_spec",
                        lambda name, *args: None if name == "torchmetrics" else real_find_spec(name, *args))
    folder = _photos(tmp_path / "photos", count=2)
    started = time.perf_counter()
    report = ev.evaluate(folder, size=32)
    assert time.perf_counter() - started < 10
    assert report.rows[0].vgg is None and report.rows[0].lpips is None and report.rows[0].fid is None
    assert report.unavailable["vgg"] == "cannot resolve download.pytorch.org"
    assert "recolor-cli[metrics]" in report.unavailable["lpips"]
    assert "recolor-cli[metrics]" in report.unavailable["fid"]


def test_pair_metrics_are_averaged_per_image(tmp_path, monkeypatch):
    def fake_loader(name, device):
        if name == "vgg":  # mean absolute difference per image stands in for the VGG distance
            return (lambda pred, true: (pred - true).abs().flatten(1).mean(1)), None
        return None, "not here"

    monkeypatch.setattr(ev, "_load_perceptual", fake_loader)
    folder = _photos(tmp_path / "photos", count=3)
    report = ev.evaluate(folder, size=32, batch_size=2)

    from recolor.color import lab_to_rgb, rgb_to_lab

    dataset = ev.open_images(folder, size=32)
    rgb = torch.stack([dataset[i][1] for i in range(3)]).float() / 255
    lab = rgb_to_lab(rgb)
    gray = lab_to_rgb(torch.cat((lab[:, :1], torch.zeros_like(lab[:, 1:])), dim=1))
    expected = (gray - rgb).abs().flatten(1).mean(1).mean().item()
    assert report.rows[0].vgg == pytest.approx(expected, rel=1e-5)
    assert report.unavailable == {"lpips": "not here", "fid": "not here"}


def test_fid_accumulates_over_the_set_with_a_stand_in_feature_extractor(tmp_path, monkeypatch):
    pytest.importorskip("torchmetrics")
    pytest.importorskip("torch_fidelity")
    from torchmetrics.image.fid import FrechetInceptionDistance

    class MeanColor(torch.nn.Module):  # 3 features: the mean RGB in [0, 1]
        def forward(self, images):
            return images.float().mean(dim=(2, 3))

    def fake_loader(name, device):
        if name == "fid":
            return FrechetInceptionDistance(feature=MeanColor(), normalize=True), None
        return None, "not here"

    monkeypatch.setattr(ev, "_load_perceptual", fake_loader)
    folder = _photos(tmp_path / "photos", count=6)
    report = ev.evaluate(folder, size=32, batch_size=4)  # two batches: 4 + 2

    # The Fréchet distance of the two sets of mean colors, computed over all six at once.
    from scipy.linalg import sqrtm

    from recolor.color import lab_to_rgb, rgb_to_lab

    dataset = ev.open_images(folder, size=32)
    rgb = torch.stack([dataset[i][1] for i in range(6)]).double() / 255
    lab = rgb_to_lab(rgb)
    gray = lab_to_rgb(torch.cat((lab[:, :1], torch.zeros_like(lab[:, 1:])), dim=1))
    real, fake = rgb.mean(dim=(2, 3)).numpy(), gray.mean(dim=(2, 3)).numpy()
    cov_real, cov_fake = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    expected = (np.sum((real.mean(0) - fake.mean(0)) ** 2)
                + np.trace(cov_real + cov_fake - 2 * sqrtm(cov_real @ cov_fake).real))
    assert report.rows[0].fid == pytest.approx(expected, rel=1e-2, abs=1e-4)
    assert report.rows[0].fid > 0.01


def test_all_reports_builtins_that_cannot_load(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setattr(ev, "_builtin_names", lambda: ["gan", "wgan"])
    real_load = ev._load_model

    def load(spec, device):
        if spec in ("gan", "wgan"):
            raise ModelError(f"the built-in model {spec!r} has no weights in this install yet")
        return real_load(spec, device)

    monkeypatch.setattr(ev, "_load_model", load)
    folder = _photos(tmp_path / "photos", count=2)
    report = ev.evaluate(folder, [str(tiny_model)], all_builtin=True, size=32, perceptual=False)
    assert [row.model for row in report.rows] == ["gray", str(tiny_model)]
    assert "no weights" in report.unavailable["gan"] and "no weights" in report.unavailable["wgan"]


def test_size_must_suit_the_model(tmp_path, tiny_model):
    from recolor.errors import UsageError

    folder = _photos(tmp_path / "photos", count=1)
    with pytest.raises(UsageError, match="multiple of 32"):
        ev.evaluate(folder, [str(tiny_model)], size=48, perceptual=False)


# ---------------------------------------------------------------------------------------- the CLI


def _run(*args):
    result = CliRunner().invoke(app, ["eval", *args])
    return result


def test_cli_json_has_the_documented_shape(tmp_path, tiny_model):
    folder = _photos(tmp_path / "photos", count=3)
    result = _run(str(tiny_model), "--data", str(folder), "--size", "32", "--format", "json", "--no-perceptual",
                  "--device", "cpu", "--workers", "0")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == JSON_KEYS
    assert report["size"] == 32 and report["n"] == 3 and report["data"] == str(folder)
    assert set(report["ground_truth"]) == {"colorfulness"}
    assert [row["model"] for row in report["rows"]] == ["gray", str(tiny_model)]
    for row in report["rows"]:
        assert set(row) == ROW_KEYS
        assert row["vgg"] is None and row["lpips"] is None and row["fid"] is None
        assert row["psnr"] > 5 and 0 < row["ssim"] <= 1 and row["images_per_s"] > 0
    assert set(report["unavailable"]) == {"vgg", "lpips", "fid"}
    assert report["rows"][0]["delta_cf"] == pytest.approx(
        report["rows"][0]["colorfulness"] - report["ground_truth"]["colorfulness"], abs=1e-6)
    # A saved report renders again in any format without re-evaluating.
    assert ev.Report.from_json(report).to_json() == report


def test_cli_markdown_csv_table_and_out_file(tmp_path):
    folder = _photos(tmp_path / "photos", count=2)
    common = ["--data", str(folder), "--size", "32", "--no-perceptual", "--workers", "0"]

    markdown = _run(*common, "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.stdout.splitlines()
    assert lines[0].startswith("| Model | PSNR (↑) | SSIM (↑) |")
    assert lines[1].startswith("|:---|---:|")
    assert lines[2].startswith("| gray | ")

    table = _run(*common)
    assert table.exit_code == 0
    assert "gray" in table.stdout and "PSNR" in table.stdout and "2 images" in table.stdout

    out = tmp_path / "results.csv"
    written = _run(*common, "--format", "csv", "--out", str(out))
    assert written.exit_code == 0, written.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["model"] for r in rows] == ["gray"]
    assert float(rows[0]["psnr"]) > 5 and rows[0]["vgg"] == ""
    assert "gray" in written.stdout  # the table still prints
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left


def test_ctrl_c_says_how_far_it_got_and_writes_nothing(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "photos", count=6)
    real, calls = ev.rgb_to_lab, []

    def ctrl_c_in_the_second_batch(rgb):
        calls.append(len(rgb))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(rgb)

    monkeypatch.setattr(ev, "rgb_to_lab", ctrl_c_in_the_second_batch)
    out = tmp_path / "eval.json"
    result = _run("--data", str(folder), "--size", "32", "--no-perceptual", "--workers", "0", "--batch-size", "2",
                  "--format", "json", "--out", str(out))
    assert result.exit_code == 130, result.output
    assert result.stdout == "" and not out.exists()
    assert result.stderr.strip().splitlines()[-1] == (
        "interrupted: stopped after 2 of 6 photos; nothing printed or written → run it again (eval keeps no partial "
        "scores); --limit N scores N photos spread over the set, in less time")


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    missing = _run("--data", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2
    assert "does not exist" in missing.output and "Traceback" not in missing.output

    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = _run("--data", str(empty))
    assert no_images.exit_code == 1 and "no image files" in no_images.output

    folder = _photos(tmp_path / "photos", count=1)
    bad_model = _run(str(tmp_path / "photos"), "--data", str(folder), "--no-perceptual")
    assert bad_model.exit_code != 0 and "Traceback" not in bad_model.output
    assert "config.json" in bad_model.output


def test_cli_gray_in_the_model_list_is_a_usage_error(tmp_path):
    folder = _photos(tmp_path / "photos", count=1)
    result = _run("gray", "--data", str(folder), "--no-perceptual")
    assert result.exit_code == 2 and "baseline" in result.output
