"""Shared test setup: keep every test off the network and small enough for two CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

# Unreachable services must never be tried from tests: a Hub call without these costs seconds of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Each test gets its own HF and torch caches so nothing leaks in from the user's machine."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module of tiny networks.

    Small tensors gain nothing from a second thread, and on a shared, busy machine two OpenMP
    threads waiting on each other made the training tests 20x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
