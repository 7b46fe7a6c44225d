"""The OpenVINO export beside a weights folder: made once, checked against its weights, errors that name
the file, and the OpenVINO engine computing what the torch generator computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import recolor
from apply_fixtures import save_gray, tiny_model
from recolor.engine.export import find_export
from recolor.engine.openvino_cpu import OpenVINOEngine
from recolor.engine.torch_device import TorchEngine
from recolor.errors import ModelError
from recolor.hub.exports import RECORD_NAME, cache_folder
from recolor.hub.files import file_sha256
from recolor.nn.pretrained import load_generator


def lightness_batch(seed: int = 0, shape: tuple[int, int, int] = (2, 64, 96)) -> np.ndarray:
    """Smooth L in [0, 100], like a photo's at render size."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(10, 90, size=(shape[0], 4, 6)).astype(np.float32)
    return np.stack([cv2.resize(plane, (shape[2], shape[1]), interpolation=cv2.INTER_LINEAR) for plane in coarse])


def test_a_folder_without_an_export_gets_one_once_and_it_computes_the_generator(tmp_path):
    folder = tiny_model(tmp_path / "run")
    lines: list[str] = []
    made = find_export(folder, notify=lines.append)
    assert made.made_now and made.folder == folder and len(lines) == 1
    assert str(folder) in lines[0] and "making one" in lines[0]
    record = json.loads((folder / RECORD_NAME).read_text())
    assert record["weights_sha256"] == file_sha256(folder / "model.safetensors")
    again = find_export(folder, notify=lines.append)
    assert not again.made_now and len(lines) == 1  # made once, then read

    generator, _ = load_generator(folder)
    expected = TorchEngine(generator, torch.device("cpu"), precision="fp32").ab(lightness_batch())
    got = OpenVINOEngine(again.graph, precision="fp32").ab(lightness_batch())
    assert got.shape == expected.shape == (2, 2, 64, 96) and got.dtype == np.float32
    # fp16 weights, f32 compute: within a small fraction of one ab unit (about -110..110).
    error = np.abs(got - expected)
    assert error.mean() < 0.05 and error.max() < 0.5
    # Another render shape through the same compiled model (batch, height and width are free).
    other = OpenVINOEngine(again.graph, precision="fp32").ab(lightness_batch(1, (1, 96, 64)))
    assert other.shape == (1, 2, 96, 64)


def test_an_export_of_other_weights_is_an_error_that_names_it_never_a_silent_fallback(tmp_path):
    folder = tiny_model(tmp_path / "run")
    find_export(folder)
    tiny_model(tmp_path / "other", seed=1)
    (folder / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ModelError) as error:
        find_export(folder)
    assert f"{folder / RECORD_NAME} was made from other weights" in error.value.cause
    assert "delete export.json" in error.value.fix


def test_a_damaged_or_stray_export_file_is_an_error_that_names_it(tmp_path):
    folder = tiny_model(tmp_path / "run")
    find_export(folder)
    graph = folder / "openvino_model.xml"
    graph.write_text(graph.read_text().replace("lightness", "lightnesz"))
    with pytest.raises(ModelError, match="openvino_model.xml does not match export.json"):
        find_export(folder)
    (folder / RECORD_NAME).unlink()
    with pytest.raises(ModelError, match="openvino_model.xml has no export.json beside it"):
        find_export(folder)
    (folder / RECORD_NAME).write_text("{ not json")
    with pytest.raises(ModelError, match="export.json cannot be read"):
        find_export(folder)


def test_weights_in_the_hub_cache_get_their_export_in_recolors_cache_beside_it(tmp_path):
    from huggingface_hub import constants

    snapshot = tiny_model(Path(constants.HF_HUB_CACHE) / "models--org--tiny" / "snapshots" / "abc")
    made = find_export(snapshot)
    digest = file_sha256(snapshot / "model.safetensors")
    assert made.folder == cache_folder(digest) and not (snapshot / RECORD_NAME).exists()
    assert not find_export(snapshot).made_now


def test_apply_on_the_cpu_never_imports_torch_or_timm(tmp_path):
    """The default engine on the CPU, in a fresh process, as a user runs it."""
    save_gray(tmp_path / "in" / "a.png", width=96, height=64)
    script = (
        "import sys\n"
        "from recolor.cli import main\n"
        "sys.argv = ['recolor', 'apply', sys.argv[1], '--out', sys.argv[2], '--device', 'cpu']\n"
        "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('torch', 'timm', 'torchvision')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(recolor.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "in"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "a.png").is_file() and "openvino" in done.stderr
