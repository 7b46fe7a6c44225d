"""recolor.hub.registry offline: the registry, packaged weights, folders, and `recolor models list|verify`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from apply_fixtures import save_gray, tiny_model
import recolor
from recolor.hub import registry as models
from recolor.cli import app
from recolor.errors import ModelError, UsageError
from recolor.hub.registry import BUILTIN_MODELS, DEFAULT_MODEL, file_sha256, load_model, resolve_model

runner = CliRunner()


@pytest.fixture
def packaged(tmp_path, monkeypatch) -> Path:
    """A package weights root holding tiny `gan` and default models, as the package ships them."""
    root = tmp_path / "weights"
    for name in {"gan", DEFAULT_MODEL}:
        tiny_model(root / name)
    monkeypatch.setattr(models, "WEIGHTS_ROOT", root)
    return root


def test_registry_names_the_three_recipes_with_hub_repos():
    assert set(BUILTIN_MODELS) == {"gan", "wgan", "progan"}
    assert DEFAULT_MODEL in BUILTIN_MODELS
    for name, entry in BUILTIN_MODELS.items():
        assert entry.name == name and entry.description
        assert entry.repo_id.count("/") == 1 and name in entry.repo_id
        assert entry.package_folder == Path(recolor.__file__).parent / "weights" / name
        # a pinned Hub revision is always verifiable; a packaged model has its digest before it is published
        assert entry.revision is None or entry.sha256 is not None


def test_builtin_without_weights_fails_with_the_way_out():
    for name in BUILTIN_MODELS:
        if models.find_builtin(BUILTIN_MODELS[name]) is None:
            with pytest.raises(ModelError) as info:
                resolve_model(name)
            assert "no weights in this install" in info.value.cause or "not shipped" in info.value.cause
            assert "--model RUN_FOLDER" in info.value.fix


def test_packaged_weights_load_offline(packaged):
    assert resolve_model("gan") == packaged / "gan"
    generator, config = load_model("gan", device="cpu")
    assert config["generator"]["width"] == 8 and not generator.training
    with torch.no_grad():
        assert generator(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_run_folders_and_their_files_resolve_as_folders(tmp_path):
    folder = tiny_model(tmp_path / "runs" / "mine")
    assert resolve_model(str(folder)) == folder
    assert resolve_model(str(folder / "model.safetensors")) == folder


def test_folder_without_safetensors_is_refused_and_pickles_never_loaded(tmp_path):
    folder = tiny_model(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="never loads pickles"):
        resolve_model(str(folder))


def test_unknown_specs_are_usage_errors(tmp_path):
    for spec in ("not a model", "a/b/c", "x--y/z", "../up"):
        with pytest.raises(UsageError, match="unknown model"):
            resolve_model(spec)


def test_hub_id_in_offline_mode_without_cache_names_both_ways_out(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        resolve_model("someone/some-model")
    assert "neither a local folder nor in the Hugging Face cache" in info.value.cause
    assert "HF_HUB_OFFLINE" in info.value.fix and "local folder" in info.value.fix


@pytest.mark.parametrize("columns", [80, 200])
def test_models_list_shows_every_builtin_and_where_its_weights_are_and_reads_at_80_columns(packaged, columns):
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns and "…" not in result.stdout
    # Wrapped lines continue under the text they wrap, so each description reads whole again.
    joined = " ".join(line.strip() for line in lines)
    for name, entry in BUILTIN_MODELS.items():
        assert entry.description in joined
        assert any(line.split()[:1] == [name] for line in lines)
        assert any(f"hub: {entry.repo_id} " in line for line in lines)  # never cut
    assert "in package" in result.stdout and "not installed" in result.stdout


def test_models_verify_checks_sha256_and_loading(packaged, monkeypatch, tmp_path):
    from recolor.engine.export import export_folder

    export_folder(packaged / "gan")
    digest = file_sha256(packaged / "gan" / "model.safetensors")
    pinned = dataclasses.replace(BUILTIN_MODELS["gan"], revision="0" * 40, sha256=digest,
                                 export_sha256=file_sha256(packaged / "gan" / "export.json"))
    monkeypatch.setitem(BUILTIN_MODELS, "gan", pinned)
    good = runner.invoke(app, ["models", "verify", "gan"])
    assert good.exit_code == 0 and "matches the registry, and so does its OpenVINO export" in good.stdout
    # The export is checked too: a damaged graph file fails, naming it.
    graph_weights = packaged / "gan" / "openvino_model.bin"
    intact = graph_weights.read_bytes()
    graph_weights.write_bytes(intact[:-8] + b"\0" * 8)
    damaged = runner.invoke(app, ["models", "verify", "gan"])
    assert damaged.exit_code == 1 and "openvino_model.bin does not match export.json" in damaged.stdout
    graph_weights.write_bytes(intact)
    monkeypatch.setitem(BUILTIN_MODELS, "gan", dataclasses.replace(pinned, sha256="f" * 64))
    bad = runner.invoke(app, ["models", "verify"])
    assert bad.exit_code == 1 and "gan: FAILED" in bad.stdout and "sha256" in bad.stdout
    broken = tiny_model(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    result = runner.invoke(app, ["models", "verify", str(broken)])
    assert result.exit_code == 1 and "cannot be read" in result.stdout


def test_apply_uses_packaged_default_model(packaged, tmp_path):
    save_gray(tmp_path / "a.jpg")
    result = runner.invoke(app, ["apply", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out"),
                                 "--render-size", "32"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.jpg").exists()


def test_pull_of_an_unpublished_builtin_says_so():
    unpublished = [name for name, entry in BUILTIN_MODELS.items() if entry.revision is None]
    if not unpublished:
        pytest.skip("every built-in is published")
    result = runner.invoke(app, ["models", "pull", unpublished[0]])
    assert result.exit_code == 1 and "not published on the Hub yet" in result.stderr
