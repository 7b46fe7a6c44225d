"""The weights shipped inside the package: registered, intact, and what `recolor apply` uses offline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab
from typer.testing import CliRunner

from recolor.cli import app
from recolor.hub.registry import BUILTIN_MODELS, DEFAULT_MODEL, file_sha256, model_status
from recolor.nn.pretrained import WEIGHTS_NAME, read_config


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_every_built_in_model_ships_with_the_registered_sha256(name):
    model = BUILTIN_MODELS[name]
    weights = model.package_folder / WEIGHTS_NAME
    assert weights.is_file(), f"{name} is registered but not shipped in {model.package_folder}"
    assert model.sha256 is not None and file_sha256(weights) == model.sha256
    status = model_status(model, check=True)
    assert status.location == "package" and status.ok


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_shipped_folder_describes_itself(name):
    folder = BUILTIN_MODELS[name].package_folder
    config = read_config(folder)
    assert config["recipe"]["name"] == name
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "ImageNet" in card and "non-commercial" in card  # the training data's terms travel with the weights
    assert "gray" in card  # the eval table against the gray baseline


def test_default_model_colorizes_offline_and_keeps_the_photos_lightness(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    # A gray "landscape": bright smooth sky over textured ground, the kind of scene the model saw.
    sky = np.linspace(200, 170, 40)[:, None].repeat(96, axis=1)
    ground = 90 + rng.normal(0, 25, (40, 96))
    gray = np.clip(np.concatenate([sky, ground]), 0, 255).astype(np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "photo.png")

    result = CliRunner().invoke(app, ["apply", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    output = np.asarray(Image.open(tmp_path / "out" / "photo.png").convert("RGB"))
    assert output.shape == (80, 96, 3)
    lab = rgb2lab(output)
    source_l = rgb2lab(np.repeat(gray[..., None], 3, axis=2))[..., 0]
    assert np.abs(lab[..., 0] - source_l).max() < 1.0  # full-resolution L kept (8-bit rounding aside)
    assert np.hypot(lab[..., 1], lab[..., 2]).mean() > 2.0  # and it is not gray: the model adds color
    assert f"({DEFAULT_MODEL} on cpu" in result.output  # the progress line names the model it ran
