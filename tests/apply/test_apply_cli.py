"""`recolor apply` end to end through the CLI, on files built here, with a tiny saved model."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms
from typer.testing import CliRunner

from apply_fixtures import bomb_png, gray_image, save_gray, tiny_model, truncated_jpeg
from recolor.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def apply(*args: str):
    return runner.invoke(app, ["apply", *args])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_is_colorized_at_full_size_and_inputs_stay_untouched(tmp_path, model):
    save_gray(tmp_path / "album" / "a.jpg", 80, 50)
    save_gray(tmp_path / "album" / "sub" / "b.png", 33, 65)
    before = {p: digest(p) for p in (tmp_path / "album").rglob("*.*")}
    result = apply(str(tmp_path / "album"), "--model", str(model), "--out", str(tmp_path / "out"),
                   "--render-size", "64")
    assert result.exit_code == 0, result.output
    assert "done 2, skipped 0, failed 0" in result.stdout
    for source, output in [("a.jpg", "a.jpg"), ("sub/b.png", "sub/b.png")]:
        with Image.open(tmp_path / "album" / source) as src, Image.open(tmp_path / "out" / output) as out:
            assert out.size == src.size and out.mode == "RGB"
            colors = np.asarray(out).astype(int)
            assert np.abs(colors[..., 0] - colors[..., 2]).mean() > 2  # colored
    assert before == {p: digest(p) for p in (tmp_path / "album").rglob("*.*")}


def test_second_run_skips_and_overwrite_redoes(tmp_path, model):
    save_gray(tmp_path / "in" / "a.png")
    save_gray(tmp_path / "in" / "b.png", seed=1)
    common = [str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32"]
    assert apply(*common).exit_code == 0
    output = tmp_path / "out" / "a.png"
    output.write_bytes(b"marker")  # would be replaced by a redo
    again = apply(*common)
    assert again.exit_code == 0
    assert "skipping 2 image(s) whose output already exists" in again.stderr
    assert output.read_bytes() == b"marker"
    redo = apply(*common, "--overwrite")
    assert redo.exit_code == 0 and "done 2" in redo.stdout
    assert output.read_bytes() != b"marker"


def test_failed_files_are_named_the_rest_written_exit_1(tmp_path, model):
    folder = tmp_path / "in"
    save_gray(folder / "good.jpg")
    truncated_jpeg(folder / "cut.jpg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not a photo")
    (folder / "[odd] name.jpg").write_text("brackets are not rich markup")
    bomb_png(folder / "bomb.png")
    result = apply(str(folder), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 1
    assert "done 1, skipped 0, failed 5" in result.stdout
    for name, words in [("cut.jpg", "truncated"), ("empty.png", "empty"), ("text.jpg", "not an image"),
                        ("bomb.png", "pixels"), ("[odd] name.jpg", "not an image")]:
        line = next(line for line in result.stderr.splitlines() if name in line)
        assert line.startswith("failed:") and words in line
    assert (tmp_path / "out" / "good.jpg").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.jpg"]


def test_metadata_orientation_alpha_icc_dpi_and_16_bit_survive(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # rotated 90 degrees: 40 x 24 stored, 24 x 40 shown
    exif[ExifTags.Base.Make] = "TestCam"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(gray_image(40, 24)).convert("RGB").save(folder / "rotated.jpg", exif=exif.tobytes(),
                                                             icc_profile=srgb, dpi=(300, 300), quality=95)
    rgba = np.dstack([np.repeat(gray_image(30, 20)[..., None], 3, 2), np.linspace(0, 255, 600).reshape(20, 30)])
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray((gray_image(30, 20).astype(np.uint16) * 257)).save(folder / "deep.png")
    result = apply(str(folder), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    with Image.open(out / "rotated.jpg") as image:
        assert image.size == (24, 40)
        assert image.getexif()[ExifTags.Base.Make] == "TestCam"
        assert image.getexif().get(ExifTags.Base.Orientation, 1) == 1
        assert image.info.get("icc_profile") and image.info["dpi"] == pytest.approx((300, 300))
    with Image.open(out / "alpha.png") as image:
        assert image.mode == "RGBA"
        assert np.array_equal(np.asarray(image)[..., 3], rgba[..., 3].astype(np.uint8))
    with Image.open(out / "deep.png") as image:
        assert image.size == (30, 20) and image.mode == "RGB"


def deep_pixels(width: int = 48, height: int = 32, *, rgb: bool) -> np.ndarray:
    """16-bit pixels with detail below the 8-bit levels: (H, W) gray, or (H, W, 3) in color."""
    rng = np.random.default_rng(5)
    base = gray_image(width, height).astype(np.int64) * 257 + rng.integers(-128, 129, size=(height, width))
    if rgb:
        base = np.stack([base, 65535 - base, rng.integers(0, 65536, size=(height, width))], axis=-1)
    return base.clip(0, 65535).astype(np.uint16)


def save_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit RGB PNG written with pypng (Pillow cannot write 16-bit RGB)."""
    import png

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width, _ = pixels.shape
    with open(path, "wb") as file:
        png.Writer(width, height, greyscale=False, bitdepth=16).write(file, pixels.reshape(height, -1))
    return path


def read_png16(path: Path) -> np.ndarray:
    """The (H, W, 3) uint16 pixels of a 16-bit RGB PNG; fails on any other kind."""
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    assert info["bitdepth"] == 16 and info["planes"] == 3 and not info["alpha"]
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, 3)


def lab(pixels: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return rgb2lab(pixels / np.iinfo(pixels.dtype).max)


def test_16_bit_png_gray_and_rgb_come_out_as_16_bit_png_with_the_inputs_lightness(tmp_path, model):
    gray, color = deep_pixels(rgb=False), deep_pixels(rgb=True)
    save_png16(tmp_path / "in" / "color.png", color)
    Image.fromarray(gray).save(tmp_path / "in" / "gray.png")  # Pillow writes uint16 gray as I;16
    with Image.open(tmp_path / "in" / "gray.png") as image:
        assert image.mode == "I;16"
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32")
    assert result.exit_code == 0, result.output
    for name, source in [("gray.png", gray), ("color.png", color)]:
        output = tmp_path / "out" / name
        assert output.read_bytes()[24] == 16  # IHDR bit depth
        pixels = read_png16(output)
        assert pixels.shape == (32, 48, 3)
        assert len(np.unique(pixels % 257)) > 100  # not 8-bit levels scaled up
        # The input's own L, to 16-bit precision: the same output rounded to 8 bits is further off.
        assert np.abs(lab(pixels)[..., 0] - lab(source)[..., 0]).max() < 0.05
        rounded = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
        assert np.abs(lab(rounded)[..., 0] - lab(source)[..., 0]).max() > 0.05
        assert np.abs(lab(pixels)[..., 1:]).mean() > 3  # colored by the model
        assert np.abs(lab(pixels)[..., 1:] - lab(source)[..., 1:]).mean() > 3  # not the input's colors


def test_16_bit_tiff_comes_out_as_16_bit_tiff(tmp_path, model):
    import tifffile

    source = deep_pixels(rgb=True)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "scan.tif", source, photometric="rgb")
    result = apply(str(tmp_path / "in" / "scan.tif"), "--model", str(model), "--out", str(tmp_path / "out"),
                   "--render-size", "32")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out" / "scan.tif") as tiff:
        page = tiff.pages[0]
        assert page.bitspersample == 16 and page.samplesperpixel == 3
        pixels = page.asarray()
    assert pixels.dtype == np.uint16 and pixels.shape == source.shape
    assert np.abs(lab(pixels)[..., 0] - lab(source)[..., 0]).max() < 0.05


def test_16_bit_png_as_jpg_is_an_8_bit_jpeg_and_compare_images_are_8_bit(tmp_path, model):
    source = deep_pixels(rgb=True)
    save_png16(tmp_path / "in" / "color.png", source)
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32",
                   "--format", "jpg", "--compare")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "color.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.bits == 8
        pixels = np.asarray(image)
    assert pixels.shape == (32, 48, 3)
    # 8-bit rounding, then JPEG at quality 95 (4:4:4): L within a few units.
    assert np.abs(lab(pixels)[..., 0] - lab(source)[..., 0]).mean() < 1.5
    with Image.open(tmp_path / "out" / "compare" / "color.jpg") as sheet:
        assert sheet.format == "JPEG" and sheet.mode == "RGB" and sheet.bits == 8
        assert sheet.size == (48 + 8 + 48, 32)


def test_format_suffix_gif_note_and_saturation_zero(tmp_path, model):
    save_gray(tmp_path / "in" / "a.jpg")
    Image.fromarray(gray_image()).save(tmp_path / "in" / "anim.gif")
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32",
                   "--suffix", "_c", "--saturation", "0")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("written as PNG") == 1
    for name in ("a_c.jpg", "anim_c.png"):
        pixels = np.asarray(Image.open(tmp_path / "out" / name).convert("RGB")).astype(int)
        assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 2  # saturation 0: gray
    webp = apply(str(tmp_path / "in" / "a.jpg"), "--model", str(model), "--out", str(tmp_path / "w"),
                 "--render-size", "32", "--format", "webp")
    assert webp.exit_code == 0 and Image.open(tmp_path / "w" / "a.webp").format == "WEBP"


def test_compare_writes_before_after_images_and_a_relative_contact_sheet(tmp_path, model):
    save_gray(tmp_path / "in" / "a b.jpg")
    save_gray(tmp_path / "in" / "sub" / "c.png")
    result = apply(str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32",
                   "--compare")
    assert result.exit_code == 0, result.output
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)="([^"]+)"', index)
    assert len(links) == 4
    from urllib.parse import unquote

    for link in links:
        assert not link.startswith(("/", "file:", "http"))
        assert (tmp_path / "out" / unquote(link)).is_file()
    assert sorted(unquote(link) for link in links) == ["a b.jpg", "compare/a b.jpg", "compare/sub/c.jpg", "sub/c.png"]
    with Image.open(tmp_path / "out" / "compare" / "a b.jpg") as sheet:
        assert sheet.width > 2 * 48  # before and after side by side


def test_dry_run_shows_the_layout_and_writes_nothing(tmp_path, model):
    save_gray(tmp_path / "in" / "a.jpg")
    save_gray(tmp_path / "in" / "sub" / "b.png")
    result = apply(str(tmp_path / "in"), "--dry-run", "--compare")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert f"output folder: {tmp_path / 'in-colorized'}" in lines
    assert f"would colorize {tmp_path / 'in' / 'a.jpg'} -> a.jpg (before/after: compare/a.jpg)" in lines
    assert f"would colorize {tmp_path / 'in' / 'sub' / 'b.png'} -> sub/b.png (before/after: compare/sub/b.jpg)" in lines
    assert not (tmp_path / "in-colorized").exists()


def test_ctrl_c_says_what_is_done_and_what_is_left_and_the_same_command_resumes(tmp_path, model, monkeypatch):
    from recolor.apply import pipeline
    from recolor.engine.openvino_cpu import OpenVINOEngine

    for index in range(6):
        save_gray(tmp_path / "in" / f"p{index}.png", seed=index)
    common = [str(tmp_path / "in"), "--model", str(model), "--out", str(tmp_path / "out"), "--render-size", "32",
              "--batch-size", "2"]
    real_ab, real_finish = OpenVINOEngine.ab, pipeline._finish
    batches = []

    def ctrl_c_at_the_second_batch(self, lightness):
        batches.append(len(lightness))
        if len(batches) == 2:
            raise KeyboardInterrupt  # where SIGINT's handler raises it: in the main thread
        return real_ab(self, lightness)

    def slow_finish(*args, **kwargs):  # the first batch is still being written when Ctrl-C comes
        time.sleep(0.3)
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(OpenVINOEngine, "ab", ctrl_c_at_the_second_batch)
    monkeypatch.setattr(pipeline, "_finish", slow_finish)
    result = apply(*common)
    assert result.exit_code == 130, result.output
    # The writes under way finished and count: two whole files (the first batch), no temporary ones.
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 2 and all(path.name in {f"p{i}.png" for i in range(6)} for path in written)
    for path in written:
        with Image.open(path) as image:
            assert image.size == (48, 32)
    line = result.stderr.strip().splitlines()[-1]
    assert line == (f"interrupted: 2 of 6 image(s) colorized into {tmp_path / 'out'}, 4 left → the same command "
                    "resumes: the outputs written are skipped")

    monkeypatch.setattr(OpenVINOEngine, "ab", real_ab)
    again = apply(*common)
    assert again.exit_code == 0, again.output
    assert "skipping 2 image(s)" in again.stderr and "done 4, skipped 2, failed 0" in again.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["missing-folder"], "does not exist"),
    (["{in}", "--model", "no_such_model!"], "unknown model"),
    (["{in}", "--render-size", "100"], "multiple of 32"),
    (["{in}", "--device", "tpu"], "unknown device"),
    (["{empty}"], "no image or video files"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, model, args, words):
    save_gray(tmp_path / "in" / "a.jpg")
    (tmp_path / "empty").mkdir()
    args = [a.format(**{"in": tmp_path / "in", "empty": tmp_path / "empty"}) for a in args]
    result = apply(*args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert words in result.stderr and len(result.stderr.strip().splitlines()) <= 2


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


def test_default_model_without_packaged_weights_fails_fast_in_one_line_without_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    import recolor.hub.registry

    # An install whose package holds no weights (as before the weights were trained).
    monkeypatch.setattr(recolor.hub.registry, "WEIGHTS_ROOT", tmp_path / "no-weights")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"  # any Hub request would land here
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _Recorder.requests = []
    save_gray(tmp_path / "a.jpg")
    start = time.perf_counter()
    result = apply(str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out"))
    server.shutdown()
    assert time.perf_counter() - start < 10
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no weights in this install yet" in lines[0] and "--model RUN_FOLDER" in lines[0]
    assert _Recorder.requests == []  # built-in names never touch the network
    assert not (tmp_path / "out").exists()


def test_precision_fp32_and_bf16_give_nearly_the_same_colors_and_bad_names_exit_2(tmp_path, model):
    save_gray(tmp_path / "in" / "a.png", 64, 48)
    outputs = {}
    for precision in ("fp32", "bf16"):
        result = apply(str(tmp_path / "in" / "a.png"), "--model", str(model), "--out", str(tmp_path / precision),
                       "--render-size", "64", "--precision", precision)
        assert result.exit_code == 0, result.output
        outputs[precision] = np.asarray(Image.open(tmp_path / precision / "a.png")).astype(int)
    assert np.abs(outputs["fp32"][..., 0] - outputs["fp32"][..., 2]).mean() > 2  # colored
    assert np.abs(outputs["fp32"] - outputs["bf16"]).max() <= 3
    bad = apply(str(tmp_path / "in" / "a.png"), "--model", str(model), "--precision", "fp8")
    assert bad.exit_code == 2 and "fp8" in bad.stderr
