"""recolor.metrics against scikit-image and against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recolor.metrics import colorfulness, delta_cf, psnr, ssim


def _pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of 3 images that differ by noise, a shift and a smooth structure: not trivially alike."""
    generator = torch.Generator().manual_seed(seed)
    true = torch.rand(3, 3, 32, 40, generator=generator)
    # A smooth gradient image too, so SSIM sees structure and not only noise.
    ramp = torch.linspace(0, 1, 40).expand(3, 32, 40)
    true[1] = ramp * torch.tensor([1.0, 0.6, 0.2]).view(3, 1, 1)
    noise = 0.1 * torch.randn(3, 3, 32, 40, generator=generator)
    pred = (true + noise).clamp(0, 1)
    pred[2] = pred[2].roll(3, dims=-1)
    return pred, true


def test_psnr_matches_skimage_per_image():
    pred, true = _pairs()
    ours = psnr(pred, true)
    assert ours.shape == (3,)
    for i in range(3):
        reference = peak_signal_noise_ratio(true[i].numpy(), pred[i].numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(reference, abs=1e-4)


def test_psnr_known_value_and_identical_images():
    true = torch.zeros(1, 3, 8, 8)
    pred = torch.full((1, 3, 8, 8), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(pred, true).item() == pytest.approx(20.0, abs=1e-5)
    assert math.isinf(psnr(true, true).item())


def test_ssim_matches_skimage_defaults_with_channel_axis():
    pred, true = _pairs(seed=1)
    ours = ssim(pred, true)
    assert ours.shape == (3,)
    for i in range(3):
        reference = structural_similarity(true[i].numpy(), pred[i].numpy(), channel_axis=0, data_range=1.0)
        assert ours[i].item() == pytest.approx(reference, abs=1e-5)
    assert ssim(true, true) == pytest.approx(torch.ones(3), abs=1e-6)
    # The metric is not a trivial constant: noise and the shift lower it by different amounts.
    assert len({round(v, 3) for v in ours.tolist()}) == 3


def test_ssim_float64_matches_skimage_exactly():
    pred, true = _pairs(seed=2)
    ours = ssim(pred.double(), true.double())
    reference = structural_similarity(true[0].double().numpy(), pred[0].double().numpy(), channel_axis=0,
                                      data_range=1.0)
    assert ours[0].item() == pytest.approx(reference, abs=1e-10)


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="7 x 7"):
        ssim(torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6))


def test_colorfulness_of_gray_is_zero_and_of_known_images_by_hand():
    gray = torch.full((1, 3, 16, 16), 0.37)
    assert colorfulness(gray).item() == pytest.approx(0.0, abs=1e-4)

    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    # Constant red: rg = 255, yb = 127.5, no spread -> 0.3 * sqrt(255² + 127.5²).
    assert colorfulness(red).item() == pytest.approx(0.3 * math.sqrt(255**2 + 127.5**2), rel=1e-5)

    # Half pure red, half pure blue: rg is 255 or 0 (mean 127.5, std 127.5); yb is 127.5 or -255
    # (mean -63.75, std 191.25).
    half = torch.zeros(1, 3, 4, 4)
    half[:, 0, :, :2] = 1.0
    half[:, 2, :, 2:] = 1.0
    expected = math.sqrt(127.5**2 + 191.25**2) + 0.3 * math.sqrt(127.5**2 + 63.75**2)
    assert colorfulness(half).item() == pytest.approx(expected, rel=1e-5)


def test_colorfulness_matches_a_numpy_transcription_of_the_paper():
    rng = np.random.default_rng(3)
    image = rng.random((2, 3, 10, 12)).astype(np.float32)
    ours = colorfulness(torch.from_numpy(image))
    for i in range(2):
        r, g, b = (image[i] * 255).astype(np.float64)
        rg, yb = r - g, 0.5 * (r + g) - b
        expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
        assert ours[i].item() == pytest.approx(expected, rel=1e-5)


def test_delta_cf_is_the_signed_gap():
    red = torch.zeros(2, 3, 4, 4)
    red[:, 0] = 1.0
    gray = torch.full((2, 3, 4, 4), 0.5)
    gap = delta_cf(gray, red)
    assert gap.shape == (2,)
    assert gap[0].item() == pytest.approx(-colorfulness(red)[0].item(), rel=1e-6)
    assert delta_cf(red, gray)[0].item() > 0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        colorfulness(torch.rand(3, 8, 8))
