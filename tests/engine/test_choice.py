"""`--engine` and `--device` -> the engine that runs a model."""

from __future__ import annotations

import pytest

from recolor.engine import choice
from recolor.errors import UsageError


def test_auto_is_openvino_on_the_cpu_and_torch_where_openvino_is_missing(monkeypatch):
    monkeypatch.setattr(choice, "openvino_installed", lambda: True)
    assert choice.choose_engine("auto", "cpu") == "openvino"
    monkeypatch.setattr(choice, "gpu_may_be_present", lambda: False)
    assert choice.choose_engine("auto", "auto") == "openvino"
    assert choice.choose_engine("auto", "cuda") == "torch"
    assert choice.choose_engine("torch", "cpu") == "torch"
    monkeypatch.setattr(choice, "openvino_installed", lambda: False)
    assert choice.choose_engine("auto", "cpu") == "torch"


def test_openvino_asked_for_where_it_cannot_run_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(choice, "openvino_installed", lambda: True)
    with pytest.raises(UsageError, match="runs on the CPU"):
        choice.choose_engine("openvino", "cuda:0")
    monkeypatch.setattr(choice, "openvino_installed", lambda: False)
    with pytest.raises(UsageError) as error:
        choice.choose_engine("openvino", "cpu")
    assert "pip install openvino" in error.value.fix
    with pytest.raises(UsageError, match="unknown engine"):
        choice.choose_engine("onnx", "cpu")


def test_device_auto_asks_torch_only_where_a_gpu_may_be(monkeypatch):
    monkeypatch.setattr(choice, "openvino_installed", lambda: True)
    monkeypatch.setattr(choice, "gpu_may_be_present", lambda: True)
    import recolor.devices

    asked = []
    monkeypatch.setattr(recolor.devices, "resolve_device", lambda name: asked.append(name) or __import__("torch").device("cpu"))
    assert choice.choose_engine("auto", "auto") == "openvino" and asked == ["auto"]
    monkeypatch.setattr(choice, "gpu_may_be_present", lambda: False)
    assert choice.choose_engine("auto", "auto") == "openvino" and asked == ["auto"]  # not asked again
