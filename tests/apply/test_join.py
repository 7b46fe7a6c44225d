"""The OpenCV join and the torch (device) join against recolor 0.1's numpy join and scikit-image.

Tolerances, in output levels (8-bit: of 255, 16-bit: of 65535):
- against the numpy join it replaces (tests/reference_join.py): at most 1 level at 99.9% of the
  pixels; the rest are colors pulled into the gamut, where the two bisections may end a step apart;
- against scikit-image's lab2rgb of the same L and upsampled ab, inside the gamut: at most 1 level
  at 8 and at 16 bits;
- the torch join against the OpenCV one: at most 1 level everywhere.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import lab2rgb

import reference_join
from apply_fixtures import gray_image
from recolor.apply import join as join_module
from recolor.io.photo import Photo
from recolor.apply import join_device
from recolor.apply.join import join, network_lightness
from recolor.apply.join_device import host_pixels, host_result, join_tensor, network_lightness_tensor


def photo_of(rgb: np.ndarray, *, gray: bool) -> Photo:
    return Photo(path=None, rgb=rgb, alpha=None, format="PNG", mode="L" if gray else "RGB",
                 bit_depth=16 if rgb.dtype == np.uint16 else 8, icc_profile=None, exif=None, dpi=None,
                 is_grayscale=gray)


def photo(kind: str, *, height: int = 60, width: int = 90) -> Photo:
    """gray8, color8, gray16, color16: texture and edges, 16-bit ones with detail below 8-bit levels."""
    rng = np.random.default_rng(7)
    base = gray_image(width, height).astype(np.int64)
    if kind == "gray8":
        return photo_of(np.repeat(base.astype(np.uint8)[..., None], 3, axis=2), gray=True)
    if kind == "color8":
        return photo_of(rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8), gray=False)
    deep = (base * 257 + rng.integers(-128, 129, size=base.shape)).clip(0, 65535)
    if kind == "gray16":
        return photo_of(np.repeat(deep.astype(np.uint16)[..., None], 3, axis=2), gray=True)
    rgb = np.stack([deep, 65535 - deep, rng.integers(0, 65536, size=base.shape)], axis=-1)
    return photo_of(rgb.astype(np.uint16), gray=False)


def network_output(seed: int = 0, *, strength: float = 25.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth ab (2, 32, 48) like a network's, some of it outside sRGB, and its L (32, 48)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 2, 6, 8, generator=generator) * strength
    ab = F.interpolate(coarse, size=(32, 48), mode="bilinear", align_corners=False)[0]
    return ab + torch.tensor([8.0, 15.0])[:, None, None], torch.rand(32, 48, generator=generator) * 100


CASES = [("gray8", 8), ("color8", 8), ("gray16", 8), ("gray16", 16), ("color16", 16)]


@pytest.mark.parametrize(("kind", "bit_depth"), CASES)
@pytest.mark.parametrize("upsample", ["bilinear", "guided"])
@pytest.mark.parametrize("saturation", [1.0, 2.5])
def test_join_matches_the_numpy_join_it_replaces(kind, bit_depth, upsample, saturation):
    source = photo(kind)
    ab, l_small = network_output()
    new = join(source, ab, l_small, upsample=upsample, saturation=saturation, bit_depth=bit_depth).astype(int)
    old = reference_join.join(source, ab, l_small, upsample=upsample, saturation=saturation,
                              bit_depth=bit_depth).astype(int)
    assert new.dtype == old.dtype and new.shape == old.shape == (60, 90, 3)
    gap = np.abs(new - old).max(axis=-1)
    assert (gap <= 1).mean() >= 0.999, np.sort(gap.ravel())[-10:]
    # Where they differ by more, both pulled a color into the gamut: L stays the photo's.
    assert gap.max() <= (12 if bit_depth == 8 else 12 * 257)


def upsampled_lab(source: Photo, ab: torch.Tensor) -> np.ndarray:
    """The photo's L with ab bilinearly upsampled by torch: (H, W, 3) float64 Lab."""
    height, width = source.rgb.shape[:2]
    ab_full = F.interpolate(ab[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    lightness = reference_join.lightness(source.rgb, gray=source.is_grayscale)
    return np.dstack([lightness, ab_full[0].numpy(), ab_full[1].numpy()]).astype(np.float64)


@pytest.mark.parametrize(("kind", "bit_depth"), CASES)
def test_join_is_scikit_images_lab2rgb_inside_the_gamut(kind, bit_depth):
    source = photo(kind)
    ab, l_small = network_output(strength=15.0)
    got = join(source, ab, l_small, bit_depth=bit_depth).astype(np.int64)
    lab = upsampled_lab(source, ab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lab2rgb warns about the out-of-gamut pixels it clips
        expected = lab2rgb(lab)
    top = 65535 if bit_depth == 16 else 255
    inside = _inside_srgb(lab)
    assert inside.mean() > 0.3
    assert np.abs(got - np.floor(expected * top + 0.5))[inside].max() <= 1


def _inside_srgb(lab: np.ndarray) -> np.ndarray:
    """Pixels whose Lab is inside sRGB (unclipped linear sRGB in [0, 1]), by float64 math."""
    from recolor.color import lab_to_rgb

    linear = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1)[None], clamp=False)[0]
    return ((linear >= 0) & (linear <= 1)).all(dim=0).numpy()


@pytest.mark.parametrize(("kind", "bit_depth"), CASES)
@pytest.mark.parametrize("upsample", ["bilinear", "guided"])
def test_the_torch_join_is_the_opencv_join(kind, bit_depth, upsample, monkeypatch):
    source = photo(kind)
    ab, l_small = network_output(seed=1)
    monkeypatch.setattr(join_device, "DEVICE_BAND_PIXELS", 1000)  # several bands
    levels = 65536 if source.rgb.dtype == np.uint16 else 256
    device = host_result(join_tensor(host_pixels(source, pin=False), ab, l_small, levels=levels, upsample=upsample,
                                     saturation=2.0, bit_depth=bit_depth))
    cpu = join(source, ab, l_small, upsample=upsample, saturation=2.0, bit_depth=bit_depth)
    assert device.dtype == cpu.dtype and device.shape == cpu.shape
    assert np.abs(device.astype(int) - cpu).max() <= 1


def test_the_upsampling_is_torchs_bilinear():
    """Flat L: the join is the Lab -> sRGB of torch's bilinear interpolation of ab, at any band size."""
    source = photo_of(np.full((37, 61, 3), 140, np.uint8), gray=True)
    ab = torch.randn(2, 5, 8) * 20
    got = join(source, ab, torch.zeros(5, 8)).astype(int)
    expected = join_module.lab_to_srgb(upsampled_lab(source, ab)[..., 0].astype(np.float32),
                                       upsampled_lab(source, ab)[..., 1:].transpose(2, 0, 1).astype(np.float32))
    assert np.abs(got - expected).max() <= 1


def test_network_lightness_on_the_device_is_close_to_pillows():
    source = photo("gray8", height=320, width=480)
    small = network_lightness(source, (64, 96))
    device = network_lightness_tensor(host_pixels(source, pin=False), (64, 96), levels=256)
    assert device.shape == small.shape == (64, 96)
    gap = (device - small).abs()
    assert gap.mean() < 0.3 and gap.max() < 2  # torch's antialiased bicubic is not Pillow's, nor rounded
