"""A U-Net generator whose encoder is an ImageNet-pretrained network (DeOldify's and DDColor's idea).

The note's decoder stays as it is: at every level nearest-neighbour upsampling and a ConvBlock
over the concatenation with the encoder's skip features; the input L joined once more at full
resolution; a 3x3 conv and tanh to ab. Only the encoder changes: timm's `features_only` network
(`recolor.nn.encoders`), whose five maps at strides 2..32 are the skips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recolor.nn.encoders import build_encoder, get_encoder_spec
from recolor.nn.layers import ConvBlock

# sRGB encoding of CIE Y (IEC 61966-2-1) and the inverse of CIE L: the encoder was trained on sRGB
# photos, so a gray photo's L is shown to it as the gray sRGB value a person would see.
_LAB_DELTA = 6 / 29


def lightness_to_gray_srgb(l_norm: torch.Tensor) -> torch.Tensor:
    """L in network units (N, 1, H, W) in [-1, 1] -> the gray photo's sRGB value in [0, 1]."""
    f = ((l_norm.float() + 1) * 50 + 16) / 116
    y = torch.where(f > _LAB_DELTA, f**3, 3 * _LAB_DELTA**2 * (f - 4 / 29))
    y = y.clamp(0, 1)
    return torch.where(y <= 0.0031308, 12.92 * y, 1.055 * y.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


class EncoderUNetGenerator(nn.Module):
    """U-Net from L (N, 1, H, W) in [-1, 1] to ab (N, 2, H, W) in [-1, 1] on a pretrained encoder.

    The encoder sees the gray photo as RGB (L -> gray sRGB, repeated to three channels, scaled
    as its weights expect). Decoder widths are width * (8, 4, 2, 1, 1/2) from stride 16 up to full
    resolution (256-128-64-32-16 at width 32). H and W must be multiples of 32.
    `norm` is the decoder's (batch, or pixel for progan); the encoder keeps its own BatchNorms.
    """

    stride = 32

    def __init__(self, *, encoder: str = "efficientnet-lite0", width: int = 32, norm: str = "batch",
                 in_channels: int = 1, out_channels: int = 2) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError("a pretrained encoder takes the gray photo: in_channels must be 1")
        spec = get_encoder_spec(encoder)
        self.config = {"encoder": encoder, "width": width, "norm": norm, "in_channels": in_channels,
                       "out_channels": out_channels}
        self.encoder = build_encoder(encoder)
        self.register_buffer("input_mean", torch.tensor(spec.mean), persistent=False)
        self.register_buffer("input_std", torch.tensor(spec.std), persistent=False)
        skips = spec.channels[:-1]                                   # strides 2, 4, 8, 16
        widths = [max(8, width * 8 // 2**i) for i in range(len(skips))]  # stride 16 ... 2
        widths.append(max(8, width // 2))                            # full resolution
        self.decoder = nn.ModuleList()
        channels = spec.channels[-1]
        for skip, out in zip(reversed(skips), widths):
            self.decoder.append(ConvBlock(channels + skip, out, norm=norm))
            channels = out
        self.full = ConvBlock(channels + in_channels, widths[-1], norm=norm)
        self.head = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def encoder_parameters(self, part: str = "all") -> list[nn.Parameter]:
        """The encoder's parameters: "all", or "deep": the stages at strides 16 and 32 only.

        The deep stages hold what the ImageNet features know of objects and adapt most to the new
        task; the early ones (edges, textures, at high resolution) are the costly ones to train.
        """
        if part == "all":
            return list(self.encoder.parameters())
        if part != "deep":
            raise ValueError(f"unknown encoder part {part!r}")
        first_deep = self.encoder.feature_info.module_name()[2]      # the block of the stride-8 features
        first_index = int(first_deep.split(".")[1]) + 1
        return [p for name, p in self.encoder.named_parameters()
                if name.startswith("blocks.") and int(name.split(".")[1]) >= first_index]

    def train(self, mode: bool = True) -> "EncoderUNetGenerator":
        # The encoder's BatchNorms keep their ImageNet statistics: batches of 16 gray photos would
        # only make them noisier. Their scales and shifts still train with the encoder.
        super().train(mode)
        for module in self.encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def decoder_parameters(self) -> list[nn.Parameter]:
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        height, width = lightness.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"input size {height}x{width} must be a multiple of {self.stride}")
        gray = lightness_to_gray_srgb(lightness)
        rgb = ((gray - self.input_mean) / self.input_std).to(lightness.dtype).expand(-1, 3, -1, -1)
        features = self.encoder(rgb.contiguous(memory_format=_memory_format(lightness)))
        x = features[-1]
        for block, skip in zip(self.decoder, reversed(features[:-1])):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat((x, skip.to(x.dtype)), dim=1))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.full(torch.cat((x, lightness.to(x.dtype)), dim=1))
        return torch.tanh(self.head(x))


def _memory_format(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
