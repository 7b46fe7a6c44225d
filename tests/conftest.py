"""Shared test setup: keep every test off the network and small enough for two CPU cores."""

from __future__ import annotations

import os

import pytest
import torch

# Unreachable services must never be tried from tests: a Hub call without these costs seconds of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# The terminal the suite runs in must not show through. rich reads these when a Console is made, and
# recolor.cli makes its consoles at import: a COLUMNS there would fix their width for the whole
# session (a CliRunner's env={"COLUMNS": ...} could no longer set it), FORCE_COLOR would put escape
# codes into the output the tests read.
for _name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Each test gets its own HF and torch caches so nothing leaks in from the user's machine."""
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    # huggingface_hub read HF_HOME when first imported: its cache folder (where recolor also caches
    # the exports of Hub models) is set here too.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hf" / "hub"))


@pytest.fixture(autouse=True)
def _terminal_80_columns(monkeypatch):
    """Every test sees an 80-column terminal, whatever the one running the suite (`pytest -s` in a
    narrow window): without COLUMNS rich asks the real terminal. A test passes its own COLUMNS to
    the CliRunner to try another width."""
    monkeypatch.setenv("COLUMNS", "80")


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
