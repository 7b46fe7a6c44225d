"""The U-Net generator of the note (§3.1): L in, ab out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recolor.nn.layers import ConvBlock


class UNetGenerator(nn.Module):
    """U-Net from L (N, 1, H, W) in [-1, 1] to ab (N, 2, H, W) in [-1, 1].

    Encoder: `depth` stride-2 ConvBlocks with widths width * (1, 2, 4, 8, ...) (1 -> 64 -> 128 ->
    256 -> 512 at width 64), then a stride-2 bottleneck of width * 2**depth channels (1024).
    Decoder: nearest-neighbour upsampling + ConvBlock over the skip concatenation at each level
    (no transposed convolutions, so no checkerboard), a last upsampling to the input size where the
    input L is concatenated once more, and a 3x3 conv + tanh to the two ab channels.
    H and W must be multiples of 2**(depth + 1).
    """

    def __init__(self, *, width: int = 64, depth: int = 4, norm: str = "batch", in_channels: int = 1,
                 out_channels: int = 2) -> None:
        super().__init__()
        self.config = {"width": width, "depth": depth, "norm": norm, "in_channels": in_channels,
                       "out_channels": out_channels}
        self.stride = 2 ** (depth + 1)
        widths = [width * 2**i for i in range(depth)]
        self.encoder = nn.ModuleList()
        channels = in_channels
        for out in widths:
            self.encoder.append(ConvBlock(channels, out, stride=2, norm=norm))
            channels = out
        self.bottleneck = ConvBlock(channels, width * 2**depth, stride=2, norm=norm)
        self.decoder = nn.ModuleList()
        channels = width * 2**depth
        for skip in reversed(widths):
            self.decoder.append(ConvBlock(channels + skip, skip, norm=norm))
            channels = skip
        self.head = nn.Conv2d(channels + in_channels, out_channels, 3, padding=1)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        height, width = lightness.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"input size {height}x{width} must be a multiple of {self.stride}")
        skips = []
        x = lightness
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(x)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat((x, skip), dim=1))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.head(torch.cat((x, lightness.to(x.dtype)), dim=1)))
