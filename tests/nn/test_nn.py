import json

import pytest
import torch

from recolor.errors import ModelError
from recolor.nn import MinibatchStdDev, PatchDiscriminator, PixelNorm, UNetGenerator
from recolor.nn.pretrained import CONFIG_NAME, WEIGHTS_NAME, load_generator, save_generator


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameter counts follow from the channel plan; a change to the architecture must update them on purpose.
GENERATOR_PARAMS = {16: 981_124, 32: 3_920_628, 64: 15_674_836}
DISCRIMINATOR_PARAMS = {16: 174_417, 32: 692_897, 64: 2_762_049}


@pytest.mark.parametrize("width", [16, 32, 64])
def test_parameter_counts(width):
    assert count(UNetGenerator(width=width)) == GENERATOR_PARAMS[width]
    assert count(PatchDiscriminator(width=width)) == DISCRIMINATOR_PARAMS[width]


def test_generator_follows_the_notes_channel_plan_at_width_64():
    generator = UNetGenerator(width=64)
    encoder_widths = [block[0].out_channels for block in generator.encoder]
    assert [block[0].in_channels for block in generator.encoder][0] == 1
    assert encoder_widths == [64, 128, 256, 512]
    assert generator.bottleneck[0].out_channels == 1024
    assert generator.head.out_channels == 2


@pytest.mark.parametrize("width", [16, 32])
def test_generator_output_shape_and_range(width):
    generator = UNetGenerator(width=width).eval()
    with torch.no_grad():
        ab = generator(torch.rand(2, 1, 64, 96) * 2 - 1)
    assert ab.shape == (2, 2, 64, 96)
    assert ab.abs().max() <= 1


def test_generator_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="multiple of 32"):
        UNetGenerator(width=8)(torch.zeros(1, 1, 48, 48))


@pytest.mark.parametrize("layers, side", [(3, 32), (4, 16), (5, 8)])
def test_patchgan_map_size_at_256(layers, side):
    discriminator = PatchDiscriminator(width=8, layers=layers)
    assert discriminator(torch.zeros(1, 3, 256, 256)).shape == (1, 1, side, side)


def test_patchgan_has_no_sigmoid_and_minibatch_std_adds_a_channel():
    discriminator = PatchDiscriminator(width=8, minibatch_std=True, norm="instance")
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in discriminator.modules())
    assert any(isinstance(m, MinibatchStdDev) for m in discriminator.modules())
    assert discriminator.net[-1].in_channels == 8 * 8 + 1


def test_pixelnorm_gives_unit_mean_square_per_pixel():
    x = torch.randn(2, 5, 3, 3) * 7
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_pixelnorm_generator_has_no_batchnorm():
    generator = UNetGenerator(width=8, norm="pixel")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())
    assert any(isinstance(m, PixelNorm) for m in generator.modules())


def test_minibatch_stddev_value():
    x = torch.stack([torch.zeros(2, 2, 2), torch.full((2, 2, 2), 2.0)])  # every feature: values 0 and 2
    out = MinibatchStdDev()(x)
    assert out.shape == (2, 3, 2, 2)
    assert torch.allclose(out[:, 2], torch.ones(2, 2, 2), atol=1e-4)  # population std of {0, 2} is 1
    identical = MinibatchStdDev()(torch.ones(4, 2, 2, 2))
    assert identical[:, 2].abs().max() < 1e-3


def test_save_and_load_round_trip(tmp_path):
    generator = UNetGenerator(width=8, norm="pixel").eval()
    folder = save_generator(generator, tmp_path / "model", metadata={"recipe": "progan"})
    assert (folder / WEIGHTS_NAME).is_file()
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["generator"]["width"] == 8 and config["generator"]["norm"] == "pixel"
    assert config["recipe"] == "progan"
    loaded, loaded_config = load_generator(folder)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(generator(x), loaded(x))
    assert loaded_config == config


def test_half_precision_weights_load_as_float32(tmp_path):
    generator = UNetGenerator(width=8).eval()
    folder = save_generator(generator, tmp_path / "half", half=True)
    loaded, _ = load_generator(folder)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert (generator(x) - loaded(x)).abs().max() < 1e-2


def test_loading_a_mismatched_or_missing_folder_is_a_clear_error(tmp_path):
    save_generator(UNetGenerator(width=8), tmp_path / "a")
    config = json.loads((tmp_path / "a" / CONFIG_NAME).read_text())
    config["generator"]["width"] = 16
    (tmp_path / "a" / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ModelError, match="does not match"):
        load_generator(tmp_path / "a")
    with pytest.raises(ModelError, match="does not exist"):
        load_generator(tmp_path / "missing")
