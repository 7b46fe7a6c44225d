"""VGG-16 feature maps for the perceptual loss and the perceptual distance (note §9.3, eq. 6).

Two backbones, named for what they are:

- `vgg16`: torchvision's ImageNet weights (`VGG16_Weights.IMAGENET1K_V1`), fetched by torchvision's
  own download into the torch hub cache. Without network this fails within seconds with a
  NetworkUnavailableError that names the file to place in the cache by hand.
- `vgg16-random`: the same layers with fixed random weights (Kaiming init from seed 0). Works
  offline and is the same function on every machine, but it is a much weaker perceptual signal than
  ImageNet features: runs and scores made with it are labelled `vgg16-random` wherever they appear.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from recolor.errors import ModelError, NetworkUnavailableError

# Index of each ReLU in torchvision's vgg16().features.
VGG16_RELU_INDEX = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}
# "The ReLU layers of the first few blocks" (note §9.3): the last ReLU of each of the first three blocks.
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3")

BACKBONES = {
    "vgg16": "VGG-16, torchvision ImageNet weights (IMAGENET1K_V1, downloaded once into the torch hub cache)",
    "vgg16-random": "VGG-16 with fixed random weights (Kaiming init, seed 0): works offline, a weaker signal",
}
DEFAULT_BACKBONE = "vgg16"
RANDOM_SEED = 0

# ImageNet statistics the torchvision weights were trained with (RGB in [0, 1]).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg16_layers(last_index: int) -> nn.Sequential:
    from torchvision.models.vgg import cfgs, make_layers

    # Only the convolutional layers up to the deepest requested ReLU: the classifier (120 M
    # parameters) is never needed for feature maps.
    return make_layers(cfgs["D"], batch_norm=False)[: last_index + 1]


def weights_cache_path() -> Path:
    """Where torchvision looks for (and downloads) the VGG-16 ImageNet weights."""
    from torchvision.models import VGG16_Weights

    filename = Path(urllib.parse.urlparse(VGG16_Weights.IMAGENET1K_V1.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _host_resolves(url: str) -> bool:
    """False when the download host's name cannot be resolved and no proxy would resolve it for us."""
    parts = urllib.parse.urlparse(url)
    if urllib.request.getproxies().get(parts.scheme):
        return True  # a proxy resolves names itself: let the real download try
    try:
        socket.getaddrinfo(parts.hostname, parts.port or 443)
    except OSError:
        return False
    return True


def _unavailable(url: str, reason: str) -> NetworkUnavailableError:
    return NetworkUnavailableError(
        f"the VGG-16 ImageNet weights for the perceptual loss cannot be downloaded from {url} ({reason})",
        f"on a machine with internet run once so torchvision caches them, or copy that file to "
        f"{weights_cache_path()}, or use --perceptual-backbone vgg16-random (fixed random VGG-16, offline, weaker)",
    )


def imagenet_vgg16_state() -> dict[str, torch.Tensor]:
    """The `features.*` tensors of torchvision's VGG-16 ImageNet weights, from the cache or downloaded."""
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    cached = weights_cache_path()
    if not cached.is_file() and not _host_resolves(weights.url):
        # Fail before torchvision prints its "Downloading ..." line, so the user sees one clear message.
        raise _unavailable(weights.url, f"cannot resolve {urllib.parse.urlparse(weights.url).hostname}")
    # The download has no timeout of its own; a bounded socket timeout keeps a dead network from hanging.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise _unavailable(weights.url, str(reason)) from None
    except RuntimeError as error:  # a damaged or truncated file in the cache, or a failed hash check
        raise ModelError(f"the cached VGG-16 weights cannot be loaded ({str(error).splitlines()[0]})",
                         f"delete {cached} and run again with internet") from None
    finally:
        socket.setdefaulttimeout(previous)
    return {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}


class VGGFeatures(nn.Module):
    """RGB (N, 3, H, W) in [0, 1] -> list of VGG-16 ReLU feature maps, one per requested layer.

    `pretrained=True` loads torchvision's ImageNet weights (see `imagenet_vgg16_state`);
    `pretrained=False` gives fixed random weights drawn from `seed`, the same on every machine.
    The parameters are frozen: the network is a fixed measuring device, never trained.
    """

    def __init__(self, pretrained: bool, layers: Sequence[str] = DEFAULT_LAYERS, *, seed: int = RANDOM_SEED) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_RELU_INDEX]
        if unknown or not layers:
            raise ValueError(f"unknown VGG-16 layers {unknown}; choose from {list(VGG16_RELU_INDEX)}")
        self.layer_names = tuple(layers)
        self.indices = tuple(VGG16_RELU_INDEX[name] for name in layers)
        self.pretrained = pretrained
        self.features = _vgg16_layers(max(self.indices))
        if pretrained:
            state = imagenet_vgg16_state()
            self.features.load_state_dict({k: v for k, v in state.items() if k in self.features.state_dict()})
        else:
            generator = torch.Generator().manual_seed(seed)
            for module in self.features:
                if isinstance(module, nn.Conv2d):
                    # torchvision's own VGG initialisation, made reproducible by a private generator.
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                    nn.init.zeros_(module.bias)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        # Always in eval mode: a fixed measuring device (there is no dropout or batch norm, but a
        # parent's .train() must not change that promise).
        return super().train(False)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x = (rgb - self.mean.to(rgb.dtype)) / self.std.to(rgb.dtype)
        outputs: dict[int, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self.indices:
                outputs[index] = x
        return [outputs[index] for index in self.indices]


def build_backbone(name: str, layers: Sequence[str] = DEFAULT_LAYERS) -> VGGFeatures:
    """The perceptual backbone `name` from BACKBONES (`vgg16` or `vgg16-random`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown perceptual backbone {name!r}; choose from {list(BACKBONES)}")
    return VGGFeatures(pretrained=name == "vgg16", layers=layers)


def perceptual_distance(rgb_a: torch.Tensor, rgb_b: torch.Tensor, features: VGGFeatures) -> torch.Tensor:
    """Per-image perceptual distance (N,), the note's eq. (6): Σ_layers mean over (C, H, W) of (φ(a) - φ(b))².

    RGB batches (N, 3, H, W) in [0, 1]. Both batches go through the network in one pass.
    Differentiable with respect to both inputs (the perceptual loss is its batch mean).
    """
    if rgb_a.shape != rgb_b.shape or rgb_a.ndim != 4 or rgb_a.shape[1] != 3:
        raise ValueError(f"perceptual_distance expects two equal RGB batches, got {tuple(rgb_a.shape)} "
                         f"and {tuple(rgb_b.shape)}")
    n = rgb_a.shape[0]
    maps = features(torch.cat((rgb_a, rgb_b), dim=0))
    total = rgb_a.new_zeros(n, dtype=torch.float32)
    for fmap in maps:
        difference = fmap[:n].float() - fmap[n:].float()
        total = total + difference.square().flatten(1).mean(dim=1)
    return total
