"""Image-quality metrics for colorizations: pure functions on batched tensors, one value per image.

The RGB metrics (PSNR, SSIM, colorfulness) take sRGB batches (N, 3, H, W) in [0, 1]; the color-error
metrics (AuC, spurious and wrong color) take CIE Lab batches (N, 3, H, W) from `recolor.color.rgb_to_lab`
(L in [0, 100], a and b in natural units). Each returns a float tensor of shape (N,) on the input's
device, so a caller averages per image (the protocol in DESIGN.md) and tests can check each function
alone against a reference. scikit-image is that reference for PSNR and SSIM; docs/evaluation.md
gives each figure's definition and thresholds. The networks behind the perceptual distances (VGG,
EfficientNet-Lite0, LPIPS, FID) are loaded by `recolor.eval.protocol` where their weights load;
`feature_distance` is the note's eq. (6) on the feature maps they return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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


def colorfulness(rgb: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """Hasler and Süsstrunk (2003) colorfulness per image, on RGB scaled to 0..255.

    rg = R - G, yb = (R + G) / 2 - B; M = sqrt(std_rg² + std_yb²) + 0.3 sqrt(mean_rg² + mean_yb²),
    with population standard deviations over the image's pixels. 0 for any gray image; the paper's scale
    reads 15 "slightly colorful", 33 "moderately", 45 "averagely", 59 "quite", 82 "highly", 109 "extremely".
    `eps` (0 for the metric) goes under both square roots: a loss gives it a small positive value so
    that the gradient stays finite on a gray image, where the square roots' derivatives are infinite.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"colorfulness expects RGB batches (N, 3, H, W), got {tuple(rgb.shape)}")
    scaled = _float(rgb) * 255
    red, green, blue = scaled[:, 0].flatten(1), scaled[:, 1].flatten(1), scaled[:, 2].flatten(1)
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = torch.sqrt(rg.var(dim=1, correction=0) + yb.var(dim=1, correction=0) + eps)
    offset = torch.sqrt(rg.mean(dim=1).square() + yb.mean(dim=1).square() + eps)
    return spread + 0.3 * offset


def delta_cf(rgb_pred: torch.Tensor, rgb_true: torch.Tensor) -> torch.Tensor:
    """Colorfulness gap per image: colorfulness(pred) - colorfulness(true).

    Negative: the colorization is duller than the photo (the gray baseline's gap is minus the photo's
    colorfulness); positive: more saturated than the photo.
    """
    _check_batch("delta_cf", rgb_pred, rgb_true)
    return colorfulness(rgb_pred) - colorfulness(rgb_true)


# ------------------------------------------------------------------------------ color errors in Lab

# Zhang, Isola and Efros (2016, "Colorful Image Colorization", §3.1): the cumulative share of pixels
# whose ab error is within a threshold, swept from 0 to 150, and the area under that curve.
AUC_MAX_ERROR = 150.0
# Their ab classes: a grid of 10 ab units whose cells are centred on multiples of 10, so neutral
# gray (a = b = 0) sits in the middle of one cell; 23 x 23 cells cover [-115, 115], wider than sRGB.
AUC_BIN_SIZE = 10.0
AUC_BINS = 23
# Neutral: chroma under 5, about twice a just-noticeable color difference (ΔE ≈ 2.3): white, gray and
# black surfaces, about 30 % of Imagenette's pixels.
NEUTRAL_CHROMA = 5.0
# Strongly colored: chroma over 20, the chroma of skin or a pastel; on a white shirt it is a tint
# nobody misses.
SPURIOUS_CHROMA = 20.0
# Colored: chroma of 10 or more, twice the neutral bound; pixels in between count in neither figure.
COLORED_CHROMA = 10.0
# A plainly wrong color: an ab error over 40, e.g. skin (a 15, b 20) painted green (-25, 30) is 41
# away, sky blue (-5, -35) turned beige (5, 15) 51; gray reaches it only on colors of chroma over 40.
WRONG_ERROR = 40.0


def _check_lab(name: str, *tensors: torch.Tensor) -> None:
    first = tensors[0]
    if first.ndim != 4 or first.shape[1] != 3:
        raise ValueError(f"{name} expects Lab batches (N, 3, H, W), got {tuple(first.shape)}")
    for other in tensors[1:]:
        if other.shape != first.shape:
            raise ValueError(f"{name}: shapes differ, {tuple(first.shape)} vs {tuple(other.shape)}")


def chroma(lab: torch.Tensor) -> torch.Tensor:
    """Lab chroma sqrt(a² + b²) per pixel: (N, 3, H, W) -> (N, H, W), in ab units (0 for gray)."""
    return torch.hypot(_float(lab[:, 1]), _float(lab[:, 2]))


def ab_error(lab_pred: torch.Tensor, lab_true: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between the ab of two Lab batches per pixel: (N, H, W) in ab units."""
    _check_lab("ab_error", lab_pred, lab_true)
    return torch.hypot(_float(lab_pred[:, 1]) - _float(lab_true[:, 1]), _float(lab_pred[:, 2]) - _float(lab_true[:, 2]))


def pixel_accuracy(error: torch.Tensor, *, max_error: float = AUC_MAX_ERROR) -> torch.Tensor:
    """Each pixel's share of the area under the accuracy curve: 1 - min(error, max_error) / max_error.

    A pixel counts as accurate at every threshold t >= its error, so over thresholds 0..max_error it
    adds (max_error - error) / max_error to the normalised area: the mean of this over pixels is the
    exact area under the cumulative distribution of the errors (an integral, not a sum over integer
    thresholds; the two differ by less than 1 / max_error).
    """
    return 1 - error.clamp(max=max_error) / max_error


def _auc(accuracy: torch.Tensor) -> torch.Tensor:
    return 100 * accuracy.flatten(1).mean(dim=1)


def auc(lab_pred: torch.Tensor, lab_true: torch.Tensor, *, max_error: float = AUC_MAX_ERROR) -> torch.Tensor:
    """Zhang et al.'s raw accuracy per image, in percent: the normalised area under the cumulative
    distribution of the per-pixel ab error for thresholds 0 to `max_error` (100: every ab exact)."""
    return _auc(pixel_accuracy(ab_error(lab_pred, lab_true), max_error=max_error))


def ab_class(lab: torch.Tensor, *, bin_size: float = AUC_BIN_SIZE, bins: int = AUC_BINS) -> torch.Tensor:
    """The ab class of each pixel, flat index a_cell * bins + b_cell: (N, 3, H, W) -> (N, H, W) int64.

    Cells of `bin_size` centred on multiples of it (gray in the middle of one); values beyond the
    grid fall into its edge cells.
    """
    half = bins * bin_size / 2
    cells = ((_float(lab[:, 1:]) + half) / bin_size).floor().long().clamp_(0, bins - 1)
    return cells[:, 0] * bins + cells[:, 1]


def _class_sums(accuracy: torch.Tensor, lab_true: torch.Tensor, bin_size: float, bins: int):
    classes = ab_class(lab_true, bin_size=bin_size, bins=bins).flatten()
    sums = torch.bincount(classes, weights=accuracy.flatten().double(), minlength=bins * bins)
    counts = torch.bincount(classes, minlength=bins * bins).double()
    return sums, counts


def auc_class_sums(lab_pred: torch.Tensor, lab_true: torch.Tensor, *, max_error: float = AUC_MAX_ERROR,
                   bin_size: float = AUC_BIN_SIZE, bins: int = AUC_BINS) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums, counts), each (bins²,) float64: the pixel accuracies and pixel counts per ground-truth ab class.

    Summed over batches, they give `rebalanced_auc` over the whole set.
    """
    accuracy = pixel_accuracy(ab_error(lab_pred, lab_true), max_error=max_error)
    return _class_sums(accuracy, lab_true, bin_size, bins)


def rebalanced_auc(sums: torch.Tensor, counts: torch.Tensor) -> float | None:
    """Zhang et al.'s class-rebalanced accuracy in percent, from `auc_class_sums` summed over a set.

    Each pixel weighs 1 / p, p the empirical share of its ground-truth ab class among the set's
    pixels: Σ (acc / p) / Σ (1 / p) is then the mean, over the classes the ground truth occupies,
    of each class's mean pixel accuracy, so a rare color counts as much as all the grays together.
    None when there are no pixels.
    """
    occupied = counts > 0
    if not bool(occupied.any()):
        return None
    return 100 * float((sums[occupied] / counts[occupied]).mean())


def _spurious(chroma_pred: torch.Tensor, chroma_true: torch.Tensor, neutral: float, strong: float) -> torch.Tensor:
    hits = (chroma_true < neutral) & (chroma_pred > strong)
    return 100 * hits.flatten(1).sum(dim=1).double().div(hits[0].numel()).to(torch.float32)


def spurious(lab_pred: torch.Tensor, lab_true: torch.Tensor, *, neutral: float = NEUTRAL_CHROMA,
             strong: float = SPURIOUS_CHROMA) -> torch.Tensor:
    """Spurious color per image, in percent of all its pixels: where the ground truth is neutral
    (chroma < `neutral`) and the output strongly colored (chroma > `strong`): the neon spots."""
    _check_lab("spurious", lab_pred, lab_true)
    return _spurious(chroma(lab_pred), chroma(lab_true), neutral, strong)


def _wrong(error: torch.Tensor, chroma_true: torch.Tensor, colored: float, limit: float) -> torch.Tensor:
    is_colored = (chroma_true >= colored).flatten(1)
    is_wrong = (error > limit).flatten(1) & is_colored
    share = is_wrong.sum(dim=1).double() / is_colored.sum(dim=1).double()  # 0 / 0 = NaN: no colored pixel
    return (100 * share).to(torch.float32)


def wrong(lab_pred: torch.Tensor, lab_true: torch.Tensor, *, colored: float = COLORED_CHROMA,
          error: float = WRONG_ERROR) -> torch.Tensor:
    """Wrong color per image, in percent of its colored ground-truth pixels (chroma >= `colored`)
    whose ab error exceeds `error`; NaN for an image with no colored pixel."""
    return _wrong(ab_error(lab_pred, lab_true), chroma(lab_true), colored, error)


@dataclass
class ColorFigures:
    """`auc`, `spurious` and `wrong` per image (N,) and `auc_class_sums`' (sums, counts) of one batch."""

    auc: torch.Tensor
    spurious: torch.Tensor
    wrong: torch.Tensor
    class_sums: tuple[torch.Tensor, torch.Tensor]


def color_figures(lab_pred: torch.Tensor, lab_true: torch.Tensor) -> ColorFigures:
    """All the ab-error figures of a batch at the default thresholds, as the functions above give them
    one by one, with the ab error and the chromas computed once (eval calls this per model and batch)."""
    error = ab_error(lab_pred, lab_true)
    chroma_true = chroma(lab_true)
    accuracy = pixel_accuracy(error)
    return ColorFigures(
        auc=_auc(accuracy),
        spurious=_spurious(chroma(lab_pred), chroma_true, NEUTRAL_CHROMA, SPURIOUS_CHROMA),
        wrong=_wrong(error, chroma_true, COLORED_CHROMA, WRONG_ERROR),
        class_sums=_class_sums(accuracy, lab_true, AUC_BIN_SIZE, AUC_BINS),
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile of per-image values (linear interpolation between the two nearest ranks,
    numpy's default): with 1,000 images, psnr_p10 lies between the 100th and 101st worst. None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    if ordered[low] == ordered[high]:  # also two +inf (identical images): inf - inf is NaN
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def feature_distance(maps_a: Sequence[torch.Tensor], maps_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """The note's eq. (6) per image from two lists of feature maps: Σ_i mean over (C_i, H_i, W_i) of
    (φ_i(a) - φ_i(b))², shape (N,) float32. `recolor.nn.vgg.perceptual_distance` is this on one pass
    of both batches; eval computes the ground truth's maps once per batch and reuses them per model."""
    if len(maps_a) != len(maps_b) or not maps_a:
        raise ValueError(f"feature_distance expects two equal, non-empty lists of maps, got {len(maps_a)} "
                         f"and {len(maps_b)}")
    total = maps_a[0].new_zeros(maps_a[0].shape[0], dtype=torch.float32)
    for a, b in zip(maps_a, maps_b):
        total = total + (a.float() - b.float()).square().flatten(1).mean(dim=1)
    return total
