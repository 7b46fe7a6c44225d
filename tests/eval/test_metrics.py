"""recolor.eval.metrics against scikit-image and against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recolor.eval.metrics import colorfulness, delta_cf, psnr, ssim


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


# ---------------------------------------------------------------------------- the ab-error figures


def _lab(*pixels: tuple[float, float, float]) -> torch.Tensor:
    """One Lab image of 1 x len(pixels) from (L, a, b) triples."""
    return torch.tensor(pixels, dtype=torch.float32).T.reshape(1, 3, 1, len(pixels))


def test_auc_is_the_area_under_the_error_cdf_by_hand():
    from recolor.eval.metrics import auc

    true = _lab((50, 0, 0), (50, 0, 0), (50, 30, 40), (50, 0, 0))
    # ab errors 0, 75 (a shifted by 75), 50 (the (30, 40) color predicted gray) and 200 (beyond 150).
    pred = _lab((50, 0, 0), (50, 75, 0), (50, 0, 0), (50, 0, 200))
    # Each pixel is accurate at thresholds t >= error: area shares 1, 1/2, 2/3 and 0 over [0, 150].
    expected = 100 * (1 + 0.5 + 100 / 150 + 0) / 4
    assert auc(pred, true).item() == pytest.approx(expected, rel=1e-6)
    assert auc(true, true).item() == pytest.approx(100.0)
    # Zhang et al.'s sweep over the integer thresholds 0..150 gives nearly the same area.
    errors = torch.tensor([0.0, 75.0, 50.0, 200.0])
    thresholds = torch.arange(151.0)
    swept = 100 * (errors[:, None] <= thresholds[None, :]).float().mean().item()
    assert auc(pred, true).item() == pytest.approx(swept, abs=100 / 150)


def test_ab_classes_are_cells_of_10_centred_on_multiples_of_10():
    from recolor.eval.metrics import AUC_BINS, ab_class

    lab = _lab((50, 0, 0), (50, 4.9, -4.9), (50, 5.1, 0), (50, -110, 110), (50, 500, -500))
    classes = ab_class(lab)[0, 0].tolist()
    centre = (AUC_BINS // 2) * AUC_BINS + AUC_BINS // 2
    assert classes[0] == classes[1] == centre  # gray and its near neighbours share the middle cell
    assert classes[2] == centre + AUC_BINS  # a = 5.1 is in the next a cell
    assert classes[3] == 0 * AUC_BINS + (AUC_BINS - 1)  # a = -110, b = 110: corner cells
    assert classes[4] == (AUC_BINS - 1) * AUC_BINS + 0  # beyond the grid: clamped to the edge cells


def test_rebalanced_auc_weighs_each_color_class_equally_by_hand():
    from recolor.eval.metrics import auc, auc_class_sums, rebalanced_auc

    # Three gray pixels predicted exactly, one saturated pixel (chroma 75) predicted gray.
    true = _lab((50, 0, 0), (50, 0, 0), (50, 0, 0), (50, 45, 60))
    pred = _lab((50, 0, 0), (50, 0, 0), (50, 0, 0), (50, 0, 0))
    sums, counts = auc_class_sums(pred, true)
    assert counts.sum().item() == 4 and (counts > 0).sum().item() == 2
    # Raw: (1 + 1 + 1 + 0.5) / 4; rebalanced, weights 1/p = 4/3 and 4: (4/3 * 3 * 1 + 4 * 0.5) / (4/3 * 3 + 4).
    assert auc(pred, true).item() == pytest.approx(87.5)
    assert rebalanced_auc(sums, counts) == pytest.approx(75.0)
    # Sums over batches: two copies of the set give the same figure.
    assert rebalanced_auc(2 * sums, 2 * counts) == pytest.approx(75.0)
    assert rebalanced_auc(torch.zeros(4), torch.zeros(4)) is None


def test_spurious_counts_strong_color_on_neutral_ground_truth_by_hand():
    from recolor.eval.metrics import spurious

    # Ground truth: two neutral pixels (chroma 0 and 4), one faint (chroma 8), one colored.
    true = _lab((60, 0, 0), (60, 0, 4), (60, 8, 0), (60, 40, 0))
    # Output: the first neutral pixel painted chroma 30 (spurious), the second chroma 15 (under the
    # strong bound), the faint one chroma 50 (not neutral: not counted), the colored one kept.
    pred = _lab((60, 0, 30), (60, 15, 0), (60, 50, 0), (60, 40, 0))
    assert spurious(pred, true).item() == pytest.approx(25.0)
    assert spurious(true, true).item() == 0.0
    gray = _lab(*[(60, 0, 0)] * 4)
    assert spurious(gray, true).item() == 0.0  # a gray prediction never has spurious color


def test_wrong_is_the_share_of_colored_pixels_with_a_large_error_by_hand():
    from recolor.eval.metrics import wrong

    # Colored ground truth (chroma >= 10): pixels 0, 1 and 2; pixel 3 is neutral.
    true = _lab((50, 30, 0), (50, 0, -20), (50, 60, 0), (50, 0, 0))
    # Errors: 50 (wrong), 10 (right), 60 (wrong: gray for a vivid red), and the neutral pixel's 80 is not counted.
    pred = _lab((50, -20, 0), (50, 0, -30), (50, 0, 0), (50, 80, 0))
    assert wrong(pred, true).item() == pytest.approx(200 / 3, rel=1e-6)
    neutral = _lab((50, 0, 0), (50, 2, 2))
    assert math.isnan(wrong(neutral, neutral).item())  # no colored pixel: undefined, not 0


def test_percentile_interpolates_between_ranks_like_numpy():
    from recolor.eval.metrics import percentile

    values = [float(v) for v in range(10, 101, 10)]  # 10, 20, ..., 100
    # Rank (10 - 1) * 0.1 = 0.9: 10 + 0.9 * (20 - 10).
    assert percentile(values, 10) == pytest.approx(19.0)
    rng = np.random.default_rng(0)
    sample = rng.normal(20, 3, size=37).tolist()
    assert percentile(sample, 10) == pytest.approx(float(np.percentile(sample, 10)))
    assert percentile([30.0], 10) == 30.0
    assert percentile([], 10) is None
    assert percentile([math.inf] * 3, 10) == math.inf  # identical images, not NaN


def test_feature_distance_is_eq_6_and_matches_perceptual_distance():
    from recolor.eval.metrics import feature_distance
    from recolor.nn.encoders import PretrainedFeatures
    from recolor.nn.vgg import perceptual_distance

    a = [torch.zeros(2, 1, 2, 2), torch.zeros(2, 2, 1, 1)]
    b = [torch.full((2, 1, 2, 2), 2.0), torch.tensor([3.0, 1.0]).expand(2, 2).reshape(2, 2, 1, 1)]
    # Per image: mean of 2² over the first map (4) + mean of (9, 1) over the second (5).
    assert feature_distance(a, b).tolist() == pytest.approx([9.0, 9.0])

    torch.manual_seed(0)
    features = PretrainedFeatures(pretrained=False)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    ours = feature_distance(features(x), features(y))
    assert ours == pytest.approx(perceptual_distance(x, y, features), rel=1e-5)
    assert (ours > 0).all()


def test_color_figures_of_a_batch_equal_the_figures_one_by_one():
    from recolor.eval.metrics import auc, auc_class_sums, color_figures, spurious, wrong

    generator = torch.Generator().manual_seed(0)
    true = torch.cat((torch.rand(3, 1, 8, 8, generator=generator) * 100,
                      (torch.rand(3, 2, 8, 8, generator=generator) - 0.5) * 60), dim=1)
    pred = true.clone()
    pred[:, 1:] += torch.randn(3, 2, 8, 8, generator=generator) * 30
    figures = color_figures(pred, true)
    assert figures.auc == pytest.approx(auc(pred, true))
    assert figures.spurious == pytest.approx(spurious(pred, true))
    assert figures.wrong == pytest.approx(wrong(pred, true))
    for ours, reference in zip(figures.class_sums, auc_class_sums(pred, true)):
        assert ours == pytest.approx(reference)
    assert (figures.spurious > 0).any() and (figures.wrong > 0).all()  # the case is not trivial
