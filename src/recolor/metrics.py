"""Image-quality metrics for colorizations: pure functions on batched tensors, one value per image.

Every function takes sRGB batches (N, 3, H, W) in [0, 1] and returns a float tensor of shape (N,)
on the input's device, so a caller averages per image (the protocol in DESIGN.md) and tests can
check each function alone against a reference. scikit-image is that reference for PSNR and SSIM.
The metrics that need pretrained networks (VGG distance, LPIPS, FID) live in `recolor.evaluate`,
which loads their weights where it can.
"""

from __future__ import annotations

import torch

# SSIM settings: those of skimage.metrics.structural_similarity(..., channel_axis=0, data_range=1)
# with its defaults: a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance (N - 1).
SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_batch(name: str, *tensors: torch.Tensor) -> None:
    first = tensors[0]
    if first.ndim != 4 or first.shape[1] != 3:
        raise ValueError(f"{name} expects RGB batches (N, 3, H, W), got {tuple(first.shape)}")
    for other in tensors[1:]:
        if other.shape != first.shape:
            raise ValueError(f"{name}: shapes differ, {tuple(first.shape)} vs {tuple(other.shape)}")


def _float(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def psnr(rgb_pred: torch.Tensor, rgb_true: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range² / MSE) over all pixels and channels.

    RGB in [0, data_range]. Identical images give +inf, as scikit-image's peak_signal_noise_ratio does.
    """
    _check_batch("psnr", rgb_pred, rgb_true)
    mse = (_float(rgb_pred) - _float(rgb_true)).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse)


def _box_mean(maps: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over every window x window patch lying inside the image: (..., H, W) -> (..., H-w+1, W-w+1).

    Two separable sliding sums through `unfold`; on a CPU this runs about twice as fast as
    `avg_pool2d` with a 7 x 7 kernel, and identically on a GPU.
    """
    return maps.unfold(-1, window, 1).sum(-1).unfold(-2, window, 1).sum(-1) / window**2


def ssim(rgb_pred: torch.Tensor, rgb_true: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image in [-1, 1] (1: identical), averaged over the three channels.

    Matches skimage.metrics.structural_similarity(pred, true, channel_axis=0, data_range=1) with its
    defaults (7 x 7 uniform window, no Gaussian weights, K1 0.01, K2 0.03, sample covariance): within
    1e-5 in float32, 1e-10 in float64. skimage filters the whole image and then drops the 3-pixel
    border whose windows leave the image; averaging only the windows inside the image computes
    exactly those. Images need at least 7 x 7 pixels.
    """
    _check_batch("ssim", rgb_pred, rgb_true)
    if min(rgb_pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels")
    x = _float(rgb_pred)
    y = _float(rgb_true).to(x.dtype)
    n = x.shape[0]
    # The five local means in one pass: (5N, 3, H, W).
    means = _box_mean(torch.cat((x, y, x * x, y * y, x * y), dim=0), SSIM_WINDOW)
    ux, uy, uxx, uyy, uxy = means.split(n, dim=0)
    samples = SSIM_WINDOW**2
    cov_norm = samples / (samples - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * ux * uy + c1) * (2 * vxy + c2)
    denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler and Süsstrunk (2003) colorfulness per image, on RGB scaled to 0..255.

    rg = R - G, yb = (R + G) / 2 - B; M = sqrt(std_rg² + std_yb²) + 0.3 sqrt(mean_rg² + mean_yb²),
    with population standard deviations over the image's pixels. 0 for any gray image; the paper's scale
    reads 15 "slightly colorful", 33 "moderately", 45 "averagely", 59 "quite", 82 "highly", 109 "extremely".
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"colorfulness expects RGB batches (N, 3, H, W), got {tuple(rgb.shape)}")
    scaled = _float(rgb) * 255
    red, green, blue = scaled[:, 0].flatten(1), scaled[:, 1].flatten(1), scaled[:, 2].flatten(1)
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = torch.sqrt(rg.var(dim=1, correction=0) + yb.var(dim=1, correction=0))
    offset = torch.sqrt(rg.mean(dim=1).square() + yb.mean(dim=1).square())
    return spread + 0.3 * offset


def delta_cf(rgb_pred: torch.Tensor, rgb_true: torch.Tensor) -> torch.Tensor:
    """Colorfulness gap per image: colorfulness(pred) - colorfulness(true).

    Negative: the colorization is duller than the photo (the gray baseline's gap is minus the photo's
    colorfulness); positive: more saturated than the photo.
    """
    _check_batch("delta_cf", rgb_pred, rgb_true)
    return colorfulness(rgb_pred) - colorfulness(rgb_true)
