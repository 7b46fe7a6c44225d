"""Building blocks shared by the generator and the discriminator."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance", "pixel", "none")


class PixelNorm(nn.Module):
    """Scale each pixel's feature vector to unit mean square over channels (Karras et al., ProGAN).

    No learnable parameters and no dependence on other samples in the batch, unlike BatchNorm.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MinibatchStdDev(nn.Module):
    """Append one feature map holding the batch's average feature standard deviation.

    A generator that collapses to one safe color gives a batch with near-zero spread, which the
    discriminator then sees directly in this extra channel (ProGAN, Karras et al. 2018).
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 2:
            # One sample has no spread; a zero map keeps shapes and says "no diversity information".
            spread = x.new_zeros(())
        else:
            std = torch.sqrt(x.float().var(dim=0, unbiased=False) + self.eps)
            spread = std.mean().to(x.dtype)
        feature = spread.expand(x.shape[0], 1, x.shape[2], x.shape[3])
        return torch.cat((x, feature), dim=1)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "pixel":
        return PixelNorm()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


class ConvBlock(nn.Sequential):
    """conv 3x3 -> norm -> ReLU; stride 2 halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str = "batch") -> None:
        # A conv followed by a normalisation with its own shift needs no bias.
        bias = norm in ("none", "pixel")
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )
