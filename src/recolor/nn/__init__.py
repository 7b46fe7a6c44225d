"""The networks: the U-Net generator, the PatchGAN discriminator and their building blocks."""

from recolor.nn.layers import ConvBlock, MinibatchStdDev, PixelNorm
from recolor.nn.patchgan import PatchDiscriminator
from recolor.nn.unet import UNetGenerator

__all__ = ["ConvBlock", "MinibatchStdDev", "PixelNorm", "PatchDiscriminator", "UNetGenerator"]
