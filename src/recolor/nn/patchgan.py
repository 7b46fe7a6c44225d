"""The PatchGAN discriminator (critic) on Lab images (note §3.1, §7.1.1, §9.2)."""

from __future__ import annotations

import torch
from torch import nn

from recolor.nn.layers import MinibatchStdDev, make_norm


class PatchDiscriminator(nn.Module):
    """Lab (N, 3, H, W) in network units -> logits (N, 1, H / 2**layers, W / 2**layers).

    `layers` 4x4 stride-2 convolutions (widths width, 2 width, 4 width, 8 width, ... capped at
    8 width) with LeakyReLU(0.2), normalised from the second on; then an optional minibatch
    standard-deviation channel and a 3x3 conv to one logit per patch. At 256 px with 4 layers the
    output is 16 x 16. No sigmoid: the losses take logits (BCE with logits, or Wasserstein scores).
    """

    def __init__(self, *, width: int = 64, layers: int = 4, norm: str = "batch", minibatch_std: bool = False,
                 in_channels: int = 3) -> None:
        super().__init__()
        if layers not in (3, 4, 5):
            raise ValueError(f"layers must be 3, 4 or 5, got {layers}")
        self.config = {"width": width, "layers": layers, "norm": norm, "minibatch_std": minibatch_std,
                       "in_channels": in_channels}
        blocks: list[nn.Module] = []
        channels = in_channels
        for index in range(layers):
            out = width * min(2**index, 8)
            first = index == 0
            blocks += [
                nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=first or norm == "none"),
                nn.Identity() if first else make_norm(norm, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        if minibatch_std:
            blocks.append(MinibatchStdDev())
            channels += 1
        blocks.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        return self.net(lab)
