"""Shared test setup: keep every test off the network and small enough for two CPU cores."""

from __future__ import annotations

import os

import pytest

# Unreachable services must never be tried from tests: a Hub call without these costs seconds of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Each test gets its own HF and torch caches so nothing leaks in from the user's machine."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
