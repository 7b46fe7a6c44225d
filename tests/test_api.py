"""The Python API: `recolor.load_model(...).colorize(image)` and `recolor.colorize(image)`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import recolor
from apply_fixtures import gray_image, tiny_model
from recolor.cli import app
from recolor.errors import UsageError
from recolor.io.read import read_image

runner = CliRunner()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    from recolor.engine.export import export_folder

    folder = tiny_model(tmp_path_factory.mktemp("api") / "tiny")
    export_folder(folder)
    return folder


@pytest.fixture(scope="module")
def model(model_folder) -> recolor.Model:
    return recolor.load_model(str(model_folder), render_size=64)


def cli_output(folder: Path, source: Path, out: Path) -> Path:
    result = runner.invoke(app, ["apply", str(source), "--model", str(folder), "--out", str(out),
                                 "--render-size", "64"])
    assert result.exit_code == 0, result.output
    return out / source.name


def test_a_pil_image_gets_the_pixels_the_cli_writes_for_its_file(model, model_folder, tmp_path):
    source = tmp_path / "gray.png"
    Image.fromarray(gray_image(96, 64)).save(source)
    written = np.asarray(Image.open(cli_output(model_folder, source, tmp_path / "out")))
    with Image.open(source) as image:
        colored = model.colorize(image)
    assert colored.mode == "RGB" and colored.size == (96, 64)
    assert np.array_equal(np.asarray(colored), written)
    assert not np.array_equal(written[..., 0], written[..., 2])  # it is in color: the test can fail


def test_a_uint16_array_gets_the_16_bit_pixels_the_cli_writes(model, model_folder, tmp_path):
    deep = (gray_image(96, 64).astype(np.uint16) * 257 + 100).astype(np.uint16)
    source = tmp_path / "deep.png"
    Image.fromarray(deep).save(source)  # 16-bit gray PNG (I;16)
    written = read_image(cli_output(model_folder, source, tmp_path / "out"))
    colored = model.colorize(deep)
    assert colored.dtype == np.uint16 and colored.shape == (64, 96, 3)
    assert written.bit_depth == 16 and np.array_equal(colored, written.rgb)


def test_each_kind_comes_back_as_the_same_kind(model):
    gray = gray_image(96, 64)
    assert model.colorize(gray).dtype == np.uint8 and model.colorize(gray).shape == (64, 96, 3)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    assert np.array_equal(model.colorize(rgb), model.colorize(gray))  # gray as RGB is the same photo
    alpha = np.linspace(0, 255, 96 * 64).astype(np.uint8).reshape(64, 96)
    rgba = model.colorize(np.dstack([rgb, alpha]))
    assert rgba.shape == (64, 96, 4) and np.array_equal(rgba[..., 3], alpha)
    with_alpha = model.colorize(Image.fromarray(np.dstack([gray, alpha]), "LA"))
    assert with_alpha.mode == "RGBA" and np.array_equal(np.asarray(with_alpha)[..., 3], alpha)
    assert model.colorize(Image.fromarray(gray).convert("P")).mode == "RGB"
    assert model.colorize(read_image_of(gray)).shape == (64, 96, 3)


def read_image_of(gray: np.ndarray):
    from recolor.io.photo import Photo

    return Photo(path=None, rgb=np.repeat(gray[..., None], 3, axis=2), alpha=None, format="PNG", mode="L",
                 bit_depth=8, icc_profile=None, exif=None, dpi=None, is_grayscale=True)


def test_what_it_cannot_take_is_a_clear_error(model):
    with pytest.raises(TypeError, match="uint8 or uint16"):
        model.colorize(np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        model.colorize(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(TypeError, match="PIL image"):
        model.colorize("photo.jpg")
    with pytest.raises(UsageError, match="unknown upsampling"):
        model.colorize(gray_image(), upsample="nearest")
    with pytest.raises(UsageError, match="unknown model"):
        recolor.load_model("no-such-model")


def test_colorize_once_keeps_the_model_for_the_next_call(model_folder):
    from recolor import api

    api._cached.cache_clear()
    first = recolor.colorize(gray_image(96, 64), model=str(model_folder))
    second = recolor.colorize(gray_image(96, 64, seed=1), model=str(model_folder))
    assert first.shape == second.shape == (64, 96, 3) and api._cached.cache_info().hits == 1


def test_import_recolor_loads_neither_numpy_nor_torch():
    code = "import sys, recolor; print(sorted({'numpy', 'torch', 'cv2', 'openvino'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(Path(recolor.__file__).parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_example_in_docs_api_runs(tmp_path):
    """The first code block of docs/api.md, as a reader would run it from the repository's root
    (its outputs go to tmp_path)."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "api.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"examples/', f'"{root}/examples/').replace('colored.save("', f'colored.save("{tmp_path}/')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(recolor.__file__).parents[1])})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "detroit-1915-colorized.jpg").is_file() and "Model('progan'" in done.stdout
