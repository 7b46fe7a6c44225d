"""The training loop: it learns, it resumes exactly, it stops cleanly, and the CLI drives it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import recolor.train.loop as train_loop
from recolor.cli import app
from recolor.color import denormalize_ab, rgb_to_network
from recolor.errors import TrainingError, UsageError
from recolor.nn.pretrained import load_generator
from recolor.train import CHECKPOINT_NAME, crop_and_flip, load_checkpoint, train
from train_fixtures import make_prepared, texture_image

TINY = {"width": 8, "batch_size": 8, "workers": 0, "val_images": 8, "sample_images": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("prepared"), train=32, val=8)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-4, atol=1e-6), key


# ------------------------------------------------------------------------------------- learning


def test_training_learns_colors_from_texture(tmp_path):
    """Stripes are red and checkers blue on random gray levels: only texture tells the color."""
    learnable = make_prepared(tmp_path / "textures", train=160, val=16, seed=1)
    result = train("gan", learnable, out=tmp_path / "runs", settings={**TINY, "epochs": 10, "val_images": 16})
    metrics = _metrics(result.run_dir)
    assert len(metrics) == 10 and metrics[-1]["batches"] == 200   # 200 steps of batch 8
    first, last = metrics[0], metrics[-1]
    gray_error = last["val_ab_l1_gray"]
    assert gray_error > 25        # the colors are far from gray: |ab| about 35 on average
    # The gray baseline's mean ab error, beaten by a wide margin (and far better than at epoch 1).
    assert last["val_ab_l1"] < 0.3 * gray_error
    assert last["val_ab_l1"] < 0.5 * first["val_ab_l1"]
    assert last["val_psnr"] > last["val_psnr_gray"] + 6
    assert last["l1"] < 0.5 * first["l1"]
    # The folder serves as a model: loaded alone, its generator colors new texture images.
    generator, config = load_generator(result.run_dir)
    assert config["recipe"]["name"] == "gan" and config["training"]["epochs_done"] == 10
    rng = np.random.default_rng(99)
    rgb = torch.stack([torch.from_numpy(texture_image(rng, 32)).permute(2, 0, 1) for _ in range(8)]).float() / 255
    l_norm, ab_true = rgb_to_network(rgb)
    with torch.no_grad():
        ab_pred = generator(l_norm)
    error = denormalize_ab(ab_pred - ab_true).abs().mean().item()
    assert error < 0.3 * denormalize_ab(ab_true).abs().mean().item()


# ------------------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def two_epochs(data, tmp_path_factory) -> Path:
    """The reference: two epochs in one go."""
    out = tmp_path_factory.mktemp("reference")
    train("gan", data, out=out, settings={**TINY, "epochs": 2})
    return out / "gan"


def test_resume_after_one_epoch_equals_two_epochs(data, tmp_path, two_epochs):
    train("gan", data, out=tmp_path, settings={**TINY, "epochs": 1})
    first = load_checkpoint(tmp_path / "gan" / CHECKPOINT_NAME)
    assert (first["epochs_done"], first["batches_done"]) == (1, 0)
    result = train("gan", None, out=tmp_path, resume="gan", settings={"epochs": 2})
    assert result.epochs_done == 2 and [m["epoch"] for m in result.metrics] == [2]
    _assert_same_weights(_weights(tmp_path / "gan"), _weights(two_epochs))
    resumed, reference = _metrics(tmp_path / "gan"), _metrics(two_epochs)
    assert [m["epoch"] for m in resumed] == [1, 2]
    for key in ("d_loss", "g_adv", "g_recon", "val_psnr"):
        assert resumed[1][key] == pytest.approx(reference[1][key], rel=1e-4), key


class _CtrlCAt:
    """A display that presses Ctrl-C (SIGINT to this process) at one batch of one epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.when = (epoch, batch)

    def start(self, **kwargs) -> None: ...

    def step(self, *, epoch, batch, **kwargs) -> None:
        if (epoch, batch) == self.when:
            os.kill(os.getpid(), signal.SIGINT)

    def epoch_end(self, metrics) -> None: ...

    def close(self) -> None: ...


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_same_run(data, tmp_path, two_epochs):
    # Whatever handler the suite started with (a background job starts with SIGINT ignored).
    before = signal.getsignal(signal.SIGINT)
    result = train("gan", data, out=tmp_path, settings={**TINY, "epochs": 2}, display=_CtrlCAt(2, 1))
    assert result.interrupted and result.epochs_done == 1
    checkpoint = load_checkpoint(tmp_path / "gan" / CHECKPOINT_NAME)
    assert (checkpoint["epochs_done"], checkpoint["batches_done"]) == (1, 1)
    assert len(_metrics(tmp_path / "gan")) == 1
    # The Ctrl-C handler is gone again.
    assert signal.getsignal(signal.SIGINT) is before

    result = train("gan", None, out=tmp_path, resume=str(tmp_path / "gan"))
    assert not result.interrupted and result.epochs_done == 2
    _assert_same_weights(_weights(tmp_path / "gan"), _weights(two_epochs))
    assert _metrics(tmp_path / "gan")[1]["g_recon"] == pytest.approx(_metrics(two_epochs)[1]["g_recon"], rel=1e-4)


def test_a_larger_epochs_on_resume_trains_the_rest(data, tmp_path, two_epochs):
    train("gan", data, out=tmp_path, settings={**TINY, "epochs": 1})
    result = train("gan", None, out=tmp_path, resume="gan", settings={"epochs": 3})
    assert [m["epoch"] for m in result.metrics] == [2, 3]
    assert [m["epoch"] for m in _metrics(tmp_path / "gan")] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "gan" / "samples").iterdir()) == [
        "epoch_001.png", "epoch_002.png", "epoch_003.png"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    train("gan", data, out=tmp_path, settings={**TINY, "epochs": 1})
    run = tmp_path / "gan"
    saved = (run / CHECKPOINT_NAME).read_bytes()
    monkeypatch.setattr(train_loop, "rebalanced_l1", lambda *args: torch.tensor(float("nan")))
    with pytest.raises(TrainingError) as caught:
        train("gan", None, out=tmp_path, resume="gan", settings={"epochs": 2})
    assert "NaN or infinite" in caught.value.cause and "epoch 2" in caught.value.cause
    assert "epoch 1" in caught.value.fix
    assert (run / CHECKPOINT_NAME).read_bytes() == saved
    assert len(_metrics(run)) == 1


def test_resume_keeps_what_the_run_fixed(data, tmp_path):
    train("gan", data, out=tmp_path, settings={**TINY, "epochs": 1, "steps_per_epoch": 1})
    with pytest.raises(UsageError, match="already holds a run"):
        train("gan", data, out=tmp_path, settings={**TINY, "epochs": 1})
    with pytest.raises(UsageError, match="--width 16 differs"):
        train("gan", None, out=tmp_path, resume="gan", settings={"width": 16})
    with pytest.raises(UsageError, match="trained with recipe 'gan'"):
        train("wgan", None, out=tmp_path, resume="gan")
    with pytest.raises(UsageError, match="changes the networks"):
        train("gan", None, out=tmp_path, resume="gan", overrides={"d_layers": 3})
    with pytest.raises(UsageError, match="no run to resume"):
        train("gan", None, out=tmp_path, resume="nothing-here")
    with pytest.raises(UsageError, match="fp16 needs a CUDA"):
        train("gan", data, out=tmp_path, name="fp16", settings={**TINY, "precision": "fp16", "device": "cpu"})
    with pytest.raises(UsageError, match="multiple of 32"):
        train("gan", data, out=tmp_path, name="odd", settings={**TINY, "size": 16})
    with pytest.raises(UsageError, match="larger than the prepared images"):
        train("gan", data, out=tmp_path, name="big", settings={**TINY, "size": 64})


def test_keep_epochs_keeps_each_complete_epochs_generator(data, tmp_path):
    result = train("gan", data, out=tmp_path, settings={**TINY, "epochs": 2, "steps_per_epoch": 2, "keep_epochs": True})
    kept = tmp_path / "gan" / "epochs"
    assert sorted(p.name for p in kept.iterdir()) == ["epoch_001", "epoch_002"]
    final, first, last = _weights(result.run_dir), _weights(kept / "epoch_001"), _weights(kept / "epoch_002")
    assert all(torch.equal(final[key], last[key]) for key in final)
    assert not all(torch.equal(final[key], first[key]) for key in final)
    generator, config = load_generator(kept / "epoch_001")
    assert config["metrics"]["epoch"] == 1 and generator(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_init_from_starts_a_new_run_from_another_runs_networks(data, tmp_path, two_epochs):
    frozen = {"lr_g": 0.0, "lr_d": 0.0}  # the networks stay as loaded, but for BatchNorm's running stats
    result = train("gan", data, out=tmp_path, name="fine", overrides=frozen,
                   settings={**TINY, "epochs": 1, "steps_per_epoch": 1, "init_from": str(two_epochs)})
    assert result.epochs_done == 1 and [m["epoch"] for m in result.metrics] == [1]  # epochs start afresh
    fresh = train("gan", data, out=tmp_path, name="fresh", overrides=frozen,
                  settings={**TINY, "epochs": 1, "steps_per_epoch": 1})
    source = _weights(two_epochs)
    learned = [key for key in source if key.endswith(".weight")]
    assert learned
    fine, scratch = _weights(tmp_path / "fine"), _weights(fresh.run_dir)
    assert all(torch.equal(fine[key], source[key]) for key in learned)
    assert not all(torch.equal(scratch[key], source[key]) for key in learned)
    config = json.loads((tmp_path / "fine" / "config.json").read_text())
    assert config["training"]["init_from"] == str(two_epochs)

    # Another recipe takes the generator alone; its critic (InstanceNorm here) starts new.
    other = train("wgan", data, out=tmp_path, name="w", overrides=frozen,
                  settings={**TINY, "epochs": 1, "steps_per_epoch": 1, "init_from": str(two_epochs)})
    assert other.epochs_done == 1
    assert all(torch.equal(_weights(tmp_path / "w")[key], source[key]) for key in learned)
    with pytest.raises(UsageError, match="encoder"):
        train("gan", data, out=tmp_path, name="enc", settings={**TINY, "encoder": "efficientnet-lite0",
                                                               "init_from": str(two_epochs)})
    with pytest.raises(UsageError, match="other networks"):
        train("gan", data, out=tmp_path, name="wide", settings={**TINY, "width": 16, "init_from": str(two_epochs)})
    with pytest.raises(UsageError, match="not a run folder"):
        train("gan", data, out=tmp_path, name="none", settings={**TINY, "init_from": str(tmp_path / "missing")})


def test_init_from_a_model_folder_takes_its_generator_and_a_new_critic(data, tmp_path, two_epochs):
    model = tmp_path / "model"          # what `recolor apply --model` reads: no checkpoint, no critic
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(two_epochs / name, model / name)
    frozen = {"lr_g": 0.0, "lr_d": 0.0}
    result = train("gan", data, out=tmp_path, name="more", overrides=frozen,
                   settings={**TINY, "epochs": 1, "steps_per_epoch": 1, "init_from": str(model)})
    assert result.epochs_done == 1
    source = _weights(two_epochs)
    assert all(torch.equal(_weights(tmp_path / "more")[key], source[key]) for key in source if key.endswith(".weight"))
    with pytest.raises(UsageError, match="another generator"):
        train("gan", data, out=tmp_path, name="wide", settings={**TINY, "width": 16, "init_from": str(model)})


def test_neutral_colour_options_reach_the_generator_loss_and_config_json(tmp_path, two_epochs):
    """--neutral-weight-floor, --neutral-chroma-weight and --colorfulness-weight, from a trained model.

    With frozen networks (lr 0) both runs see the same batches and predictions, so the generator's
    reconstruction loss differs by exactly the new terms and the floored L1.
    """
    data = make_prepared(tmp_path / "gray-top", train=16, val=8, gray_rows=12)
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(two_epochs / name, model / name)
    settings = {**TINY, "epochs": 1, "steps_per_epoch": 2, "init_from": str(model)}
    frozen = {"lr_g": 0.0, "lr_d": 0.0}
    base = train("gan", data, out=tmp_path, name="base", overrides=frozen, settings=settings).metrics[0]
    options = {"neutral_weight_floor": 5.0, "neutral_chroma_weight": 20.0, "colorfulness_weight": 2.0}
    run = train("gan", data, out=tmp_path, name="neutral", overrides={**frozen, **options}, settings=settings)
    line = run.metrics[0]
    assert line["neutral_chroma"] > 0 and line["colorfulness_shortfall"] >= 0
    assert "neutral_chroma" not in base and "colorfulness_shortfall" not in base
    assert line["l1"] > base["l1"]          # the data has neutral pixels, now weighed 5
    expected = 70 * line["l1"] + 20.0 * line["neutral_chroma"] + 2.0 * line["colorfulness_shortfall"]
    assert line["g_recon"] == pytest.approx(expected, rel=1e-4)
    assert base["g_recon"] == pytest.approx(70 * base["l1"], rel=1e-4)
    config = json.loads((tmp_path / "neutral" / "config.json").read_text())
    assert config["recipe_overrides"] == {**frozen, **options}
    assert config["recipe"]["neutral_weight_floor"] == 5.0
    assert [term["kind"] for term in config["recipe"]["extra_losses"]] == ["neutral_chroma", "colorfulness_shortfall"]


def test_no_gan_warm_up_trains_the_generator_alone_and_the_recipes_start_from_it(data, tmp_path):
    warm = train("gan", data, out=tmp_path, name="warm", settings={**TINY, "epochs": 1, "steps_per_epoch": 3,
                                                                     "gan": False})
    metrics = warm.metrics[0]
    assert metrics["d_loss"] is None and metrics["g_adv"] == 0 and metrics["l1"] > 0
    saved = load_checkpoint(tmp_path / "warm" / CHECKPOINT_NAME)
    assert saved["opt_d"]["state"] == {}                       # the critic never stepped
    # progan starts from the warm-up's generator with the warm-up's norm (--g-norm batch).
    fine = train("progan", data, out=tmp_path, name="pg", overrides={"g_norm": "batch", "lr_g": 0.0, "lr_d": 0.0},
                 settings={**TINY, "epochs": 1, "steps_per_epoch": 1, "init_from": str(tmp_path / "warm"),
                           "perceptual_backbone": "vgg16-random"})
    assert fine.metrics[0]["g_adv"] > 0
    source, loaded = _weights(tmp_path / "warm"), _weights(tmp_path / "pg")
    assert all(torch.equal(source[k], loaded[k]) for k in source if k.endswith(".weight"))


def test_pretrained_encoder_starts_from_imagenet_frozen_then_tunes_its_deep_stages(data, tmp_path):
    from recolor.nn.encoders import pretrained_state

    settings = {**TINY, "encoder": "efficientnet-lite0", "epochs": 2, "steps_per_epoch": 2, "batch_size": 4,
                "encoder_frozen_epochs": 1, "encoder_tune": "deep", "old_photo": 1.0, "keep_epochs": True}
    result = train("gan", data, out=tmp_path, name="enc", settings=settings)
    assert result.epochs_done == 2
    imagenet = pretrained_state("efficientnet-lite0")
    first, second = _weights(tmp_path / "enc" / "epochs" / "epoch_001"), _weights(tmp_path / "enc")
    conv = [k for k in first if k.startswith("encoder.") and k.endswith("conv_dw.weight")]
    early = [k for k in conv if int(k.split(".")[2]) <= 2]
    deep = [k for k in conv if int(k.split(".")[2]) > 2]
    assert early and deep
    # Epoch 1: the encoder is ImageNet's, bit for bit (fp32 weights in the run folder).
    assert all(torch.equal(first[k], imagenet[k.removeprefix("encoder.")]) for k in conv)
    # Epoch 2: the deep stages moved, the early ones did not.
    assert all(torch.equal(second[k], first[k]) for k in early)
    assert any(not torch.equal(second[k], first[k]) for k in deep)
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["generator"]["encoder"] == "efficientnet-lite0" and config["training"]["old_photo"] == 1.0
    generator, _ = load_generator(tmp_path / "enc")
    assert generator(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


# ------------------------------------------------------------------------------------- recipes


def test_wgan_and_progan_run_through_the_same_loop(data, tmp_path):
    # wgan in bf16 with channels_last: 5 batches = 5 critic steps and 1 generator step.
    result = train("wgan", data, out=tmp_path, settings={
        **TINY, "batch_size": 4, "epochs": 1, "steps_per_epoch": 5, "precision": "bf16", "channels_last": True})
    wgan = result.metrics[0]
    assert wgan["batches"] == 5 and wgan["gp"] >= 0 and "wasserstein" in wgan
    assert all(torch.isfinite(torch.tensor(wgan[k])) for k in ("d_loss", "g_adv", "g_recon"))
    assert json.loads((tmp_path / "wgan" / "config.json").read_text())["training"]["precision_used"] == "bf16"

    # progan with the offline random VGG-16: the perceptual term is in the loss and named in config.json.
    result = train("progan", data, out=tmp_path, settings={
        **TINY, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "perceptual_backbone": "vgg16-random"})
    progan = result.metrics[0]
    assert progan["perceptual"] > 0 and progan["perceptual_weight"] == 100
    assert progan["g_recon"] == pytest.approx(70 * progan["l1"] + 100 * progan["perceptual"], rel=1e-4)
    config = json.loads((tmp_path / "progan" / "config.json").read_text())
    assert config["perceptual_backbone"] == "vgg16-random"
    assert config["generator"]["norm"] == "pixel" and config["discriminator"]["minibatch_std"] is True


def test_crop_and_flip_cuts_each_image_where_told():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6)
    offsets = torch.tensor([[0, 2], [1, 0]])
    flips = torch.tensor([False, True])
    out = crop_and_flip(images, offsets, flips, 4)
    assert torch.equal(out[0], images[0, :, 0:4, 2:6])
    assert torch.equal(out[1], images[1, :, 1:5, 0:4].flip(-1))


# ------------------------------------------------------------------------------------- CLI


def test_cli_trains_a_tiny_run_into_a_self_describing_folder(data, tmp_path):
    result = CliRunner().invoke(app, [
        "train", "gan", "--data", str(data), "--out", str(tmp_path / "runs"), "--name", "tiny", "--width", "8",
        "--epochs", "1", "--batch-size", "8", "--workers", "0", "--steps-per-epoch", "3", "--val-images", "8",
        "--sample-images", "2", "--recon-weight", "50", "--seed", "3", "--neutral-chroma-weight", "10"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "tiny"
    assert "recolor apply --model" in result.output
    assert {p.name for p in run.iterdir()} == {"config.json", "model.safetensors", "checkpoint.pt",
                                               "metrics.jsonl", "samples", "openvino_model.xml",
                                               "openvino_model.bin", "export.json"}
    # The inference export written beside the weights was made from them (what apply will run).
    from recolor.hub.exports import check_export
    from recolor.hub.files import file_sha256

    assert check_export(run, file_sha256(run / "model.safetensors")).graph == run / "openvino_model.xml"
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["recon_weight"] == [[1, 50.0]]
    assert config["recipe_overrides"] == {"recon_weight": 50.0, "neutral_chroma_weight": 10.0}
    assert config["recipe"]["extra_losses"] == [{"kind": "neutral_chroma", "weight": 10.0, "neutral_chroma": 5.0}]
    assert config["recipe"]["adversarial"] == {"kind": "bce-soft-labels", "real_label": 0.8, "fake_label": 0.2,
                                               "generator_target": 1.0}
    assert config["discriminator"]["layers"] == 4 and config["generator"]["width"] == 8
    assert config["data"]["prepare"]["counts"] == {"train": 32, "val": 8}
    assert config["seed"] == 3 and "torch" in config["versions"]
    (line,) = _metrics(run)
    assert line["epoch"] == 1 and line["batches"] == 3 and line["recon_weight"] == 50
    for key in ("d_loss", "g_adv", "g_recon", "val_psnr", "images_per_s"):
        assert isinstance(line[key], float), key
    generator, _ = load_generator(run)
    with torch.no_grad():
        assert generator(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    # L | prediction | ground truth, one row per sample image.
    assert Image.open(run / "samples" / "epoch_001.png").size == (3 * 32, 2 * 32)
    # The checkpoint holds only tensors and plain values: loadable with weights_only=True.
    checkpoint = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    assert {"generator", "critic", "opt_g", "opt_d", "rng", "epochs_done"} <= checkpoint.keys()


def test_cli_resume_keeps_the_runs_precision_and_workers(data, tmp_path):
    """Options left out on --resume are the run's, not the CLI's defaults (bf16 stayed bf16)."""
    common = ["--out", str(tmp_path / "runs"), "--steps-per-epoch", "1", "--val-images", "0", "--sample-images", "0"]
    first = CliRunner().invoke(app, ["train", "gan", "--data", str(data), "--name", "run", "--width", "8",
                                     "--batch-size", "4", "--epochs", "1", "--precision", "bf16", "--workers", "0",
                                     *common])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(app, ["train", "gan", "--resume", "run", "--epochs", "2", *common])
    assert resumed.exit_code == 0, resumed.output
    training = json.loads((tmp_path / "runs" / "run" / "config.json").read_text())["training"]
    assert (training["precision"], training["precision_used"], training["workers"]) == ("bf16", "bf16", 0)
    assert training["epochs_done"] == 2


def test_cli_progan_fails_fast_without_the_vgg_weights(data, tmp_path, monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    result = CliRunner().invoke(app, ["train", "progan", "--data", str(data), "--out", str(tmp_path / "runs"),
                                      "--width", "8", "--workers", "0"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())   # rich may wrap the one line at the terminal width
    assert message.startswith("error: the VGG-16 ImageNet weights")
    assert "vgg16-random" in message and "vgg16-397923af.pth" in message
    assert not (tmp_path / "runs").exists()     # failed before making a run folder


def test_cli_unknown_recipe_lists_the_registry(data, tmp_path):
    result = CliRunner().invoke(app, ["train", "dcgan", "--data", str(data), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "gan, wgan, progan" in result.output
