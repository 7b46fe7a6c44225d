"""Old-photo augmentation: only chosen photos change, deterministically, and each fault does its part."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from recolor.data import degrade
from recolor.data.degrade import FAULTS, degrade_lightness


def _photos(n: int = 8, size: int = 48) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(-0.8, 0.8, size), torch.linspace(-0.8, 0.8, size), indexing="ij")
    base = (x * y * 3).sin() * 0.6
    return torch.stack([base * (0.5 + i / n) for i in range(n)])[:, None]


def _only(monkeypatch, name: str) -> None:
    """Every photo degraded by the fault `name` alone, at its strength range."""
    faults = {key: dataclasses.replace(f, probability=1.0 if key == name else 0.0) for key, f in FAULTS.items()}
    monkeypatch.setattr(degrade, "FAULTS", faults)


def test_p_zero_keeps_l_and_p_one_changes_every_photo_deterministically():
    photos = _photos()
    assert torch.equal(degrade_lightness(photos, p=0.0, generator=torch.Generator().manual_seed(0)), photos)
    first = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(3))
    again = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert first.min() >= -1 and first.max() <= 1 and first.shape == photos.shape
    changed = (first - photos).flatten(1).abs().amax(1) > 0
    assert changed.all()


def test_photos_not_drawn_stay_bit_for_bit():
    photos = _photos(32)
    out = degrade_lightness(photos, p=0.5, generator=torch.Generator().manual_seed(1))
    same = (out == photos).flatten(1).all(1)
    assert 0 < int(same.sum()) < 32


@pytest.mark.parametrize("fault", ["fade", "blur"])
def test_fade_and_blur_lower_contrast_and_detail(monkeypatch, fault):
    _only(monkeypatch, fault)
    photos = _photos()
    if fault == "blur":  # fine detail for the blur to take away: a one-pixel checkerboard on top
        y, x = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
        photos = photos * 0.5 + 0.3 * ((x + y) % 2).float()
    out = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(0))
    if fault == "fade":
        assert (out.flatten(1).std(1) < photos.flatten(1).std(1) * 0.96).all()
    else:
        detail = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
        assert detail(out) < detail(photos) * 0.95


def test_grain_adds_noise_of_the_documented_strength(monkeypatch):
    _only(monkeypatch, "grain")
    photos = torch.zeros(16, 1, 64, 64)
    out = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(0))
    noise_std = ((out - photos) / 2).flatten(1).std(1)          # in L/100 units
    assert (noise_std > FAULTS["grain"].low * 0.8).all() and (noise_std < FAULTS["grain"].high * 1.2).all()


def test_jpeg_leaves_blocks(monkeypatch):
    _only(monkeypatch, "jpeg")
    photos = _photos(4, 64)
    out = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(0))
    assert 0 < (out - photos).abs().mean() < 0.1


def test_scratches_and_dust_mark_bright_or_dark_pixels(monkeypatch):
    _only(monkeypatch, "scratches")
    photos = torch.zeros(4, 1, 32, 32)
    out = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(0))
    columns = ((out - photos).abs() > 0.5).all(dim=2)           # whole columns changed
    assert columns.flatten(1).any(1).all()
    _only(monkeypatch, "dust")
    out = degrade_lightness(photos, p=1.0, generator=torch.Generator().manual_seed(0))
    marked = ((out - photos).abs() > 0.5).flatten(1).float().mean(1)
    assert (marked > 0).all() and (marked < 0.05).all()
