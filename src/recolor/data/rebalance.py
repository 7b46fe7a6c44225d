"""AB rebalancing: per-pixel loss weights that grow with the rarity of a pixel's ground-truth color.

The note (§1.3.3, §2.1) takes the histogram of ab over the training set in N x N bins, the
empirical probability p of each bin, and

    w_raw = 1 / (p + eps),   w = w_raw / max(w_raw) * 5,   clamped to [0.5, 5].

Taken literally with a tiny eps, max(w_raw) = 1 / eps comes from an empty bin, so w = 5 eps /
(p + eps): every bin with p above 9 eps sits at the 0.5 floor, i.e. almost every color a photo
has gets the same weight and the loss is plain L1 times 0.5 (docs/data.md shows the numbers).

The remedy used by default is Zhang, Isola and Efros (2016, "Colorful Image Colorization", eq. 4):
smooth p with a Gaussian (sigma 5 ab units), keep it to the bins sRGB colors can reach (Q bins),
and mix it with the uniform distribution, w ∝ 1 / ((1 - λ) p̃ + λ / Q) with λ = 0.5. That is the
note's formula on the smoothed p̃ with eps = λ / ((1 - λ) Q), so the note's normalisation
(max -> 5) and clamp [0.5, 5] stay as they are. Common grays and browns end near the floor,
rare saturated colors near 5, with a smooth ramp in between.

Bins: `bins` x `bins` over [-110, 110] for both a and b, 33 by default (6.67 ab units a bin). An
odd count puts neutral gray (a = b = 0) in the middle of one bin: with an even count 0 is a bin
edge, and the grays, the most common colors, would scatter over four bins by float rounding
(rgb_to_lab gives them a in [-0.003, 0], b in [0, 0.005]). Values outside the range fall into
the edge bins. Arrays are indexed [a bin, b bin].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from recolor.color import rgb_to_lab
from recolor.colorspace import AB_SCALE
from recolor.errors import DataError

DEFAULT_BINS = 33
AB_RANGE = AB_SCALE  # bins cover [-AB_RANGE, AB_RANGE]
W_MAX = 5.0
W_MIN = 0.5
DEFAULT_SMOOTHING = 5.0  # Gaussian sigma in ab units (Zhang et al.)
DEFAULT_UNIFORM_MIX = 0.5  # λ, the share of the uniform distribution (Zhang et al.)
# The "tiny eps" the note's formula is compared with in prepare.json and docs/data.md.
NOTE_EPS = 1e-6


def bin_edges(bins: int = DEFAULT_BINS) -> np.ndarray:
    """The `bins` + 1 bin edges in ab units, the same for a and b."""
    return np.linspace(-AB_RANGE, AB_RANGE, bins + 1)


def bin_index(ab: torch.Tensor, bins: int, low: float = -AB_RANGE, high: float = AB_RANGE) -> torch.Tensor:
    """ab (B, 2, H, W) in ab units -> flat bin index a_bin * bins + b_bin, shape (B, H, W)."""
    scaled = (ab.float() - low) * (bins / (high - low))
    index = scaled.floor().long().clamp_(0, bins - 1)
    return index[:, 0] * bins + index[:, 1]


def ab_histogram(ab: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Counts of ab (B, 2, H, W) per bin: (bins, bins) int64 on ab's device."""
    counts = torch.bincount(bin_index(ab, bins).flatten(), minlength=bins * bins)
    return counts.view(bins, bins)


def rgb_histogram(rgb: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Counts of the ab values of uint8 sRGB images (B, 3, H, W) per bin: (bins, bins) int64."""
    lab = rgb_to_lab(rgb.float() / 255.0)
    return ab_histogram(lab[:, 1:], bins)


class ColorCounter:
    """Counts of each of the 2^24 8-bit sRGB colors, turned into an ab histogram at the end.

    Counting packed colors is an integer bincount, several times faster than converting every
    pixel; only the distinct colors seen (a few million at most) then go through `rgb_to_lab`,
    once. The result equals `rgb_histogram` over the same pixels.
    """

    def __init__(self) -> None:
        self.counts = torch.zeros(1 << 24, dtype=torch.int64)

    def add(self, rgb: torch.Tensor) -> None:
        """Count the pixels of uint8 sRGB images (B, 3, H, W).

        Each call costs a pass over the 2^24 counters: give it millions of pixels at a time.
        """
        channels = rgb.to(torch.int32)
        packed = (channels[:, 0] << 16) | (channels[:, 1] << 8) | channels[:, 2]
        self.counts += torch.bincount(packed.flatten(), minlength=1 << 24)

    def histogram(self, bins: int = DEFAULT_BINS, *, chunk: int = 1 << 20) -> torch.Tensor:
        """(bins, bins) int64 counts of the ab values of all pixels added."""
        colors = torch.nonzero(self.counts).flatten()
        histogram = torch.zeros(bins * bins, dtype=torch.int64)
        for start in range(0, len(colors), chunk):
            packed = colors[start:start + chunk]
            rgb = torch.stack(((packed >> 16) & 255, (packed >> 8) & 255, packed & 255))
            lab = rgb_to_lab(rgb.float().div(255).view(1, 3, -1, 1))
            histogram.index_add_(0, bin_index(lab[:, 1:], bins).flatten(), self.counts[packed])
        return histogram.view(bins, bins)


@lru_cache(maxsize=8)
def gamut_mask(bins: int = DEFAULT_BINS) -> np.ndarray:
    """(bins, bins) bool: the bins some 8-bit sRGB color falls into (sampled every 3 levels)."""
    levels = torch.tensor(sorted(set(range(0, 256, 3)) | {255}), dtype=torch.float32) / 255
    r, g, b = torch.meshgrid(levels, levels, levels, indexing="ij")
    rgb = torch.stack((r, g, b)).reshape(1, 3, -1, 1)
    counts = ab_histogram(rgb_to_lab(rgb)[:, 1:], bins)
    return (counts > 0).numpy()


def gaussian_smooth(values: np.ndarray, sigma_bins: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array (zero outside), sigma in bins; 0 returns a copy."""
    if sigma_bins <= 0:
        return values.astype(np.float64).copy()
    radius = max(1, int(np.ceil(3 * sigma_bins)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma_bins) ** 2)
    kernel /= kernel.sum()
    out = np.apply_along_axis(np.convolve, 0, values.astype(np.float64), kernel, mode="same")
    return np.apply_along_axis(np.convolve, 1, out, kernel, mode="same")


def uniform_mix_eps(mix: float, in_gamut_bins: int) -> float:
    """The eps with which 1 / (p + eps) equals Zhang et al.'s 1 / ((1 - λ) p + λ / Q), up to scale."""
    return mix / ((1 - mix) * in_gamut_bins)


def rebalance_weights(
    histogram: np.ndarray,
    *,
    eps: float,
    smoothing_bins: float = 0.0,
    mask: np.ndarray | None = None,
    w_max: float = W_MAX,
    w_min: float = W_MIN,
) -> np.ndarray:
    """The note's weights from a (bins, bins) histogram of counts, as float64 in [w_min, w_max].

    p is the histogram normalised to sum 1, blurred by `smoothing_bins` (sigma in bins) and, with a
    `mask` of reachable bins, set to 0 outside it and normalised again. Then
    w = clamp(w_raw / max(w_raw) * w_max, w_min, w_max) with w_raw = 1 / (p + eps).
    """
    histogram = np.asarray(histogram, dtype=np.float64)
    total = histogram.sum()
    if total <= 0:
        raise DataError("the ab histogram is empty: no pixels to compute weights from",
                        "prepare at least one color photo")
    p = gaussian_smooth(histogram / total, smoothing_bins)
    if mask is not None:
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    w_raw = 1.0 / (p + eps)
    return np.clip(w_raw / w_raw.max() * w_max, w_min, w_max)


def weight_stats(weights: np.ndarray, histogram: np.ndarray, mask: np.ndarray, *, w_min: float = W_MIN) -> dict:
    """How the weights fall: share of reachable bins and of pixels at the floor, mean pixel weight."""
    histogram = np.asarray(histogram, dtype=np.float64)
    p = histogram / histogram.sum()
    at_floor = np.isclose(weights, w_min)
    return {
        "fraction_bins_at_floor": float(at_floor[mask].mean()),
        "fraction_pixels_at_floor": float(p[at_floor].sum()),
        "mean_pixel_weight": float((p * weights).sum()),
    }


def compute_ab_weights(
    histogram: np.ndarray,
    *,
    eps: float | None = None,
    smoothing: float = DEFAULT_SMOOTHING,
    uniform_mix: float = DEFAULT_UNIFORM_MIX,
) -> dict:
    """prepare.json's "ab_weights" from a (bins, bins) histogram of counts.

    `smoothing` is the Gaussian sigma in ab units (0: none). `eps` None means Zhang et al.'s
    mixing: eps = λ / ((1 - λ) Q) with λ = `uniform_mix` and Q the number of reachable bins.
    The note's literal formula (eps 1e-6, no smoothing) is evaluated alongside for comparison.
    """
    histogram = np.asarray(histogram, dtype=np.int64)
    bins = histogram.shape[0]
    edges = bin_edges(bins)
    mask = gamut_mask(bins) | (histogram > 0)
    in_gamut = int(mask.sum())
    mixing = eps is None
    if mixing:
        eps = uniform_mix_eps(uniform_mix, in_gamut)
    smoothing_bins = smoothing / (edges[1] - edges[0])
    weights = rebalance_weights(histogram, eps=eps, smoothing_bins=smoothing_bins, mask=mask)
    literal = rebalance_weights(histogram, eps=NOTE_EPS)
    return {
        "bins": bins,
        "range": [-AB_RANGE, AB_RANGE],
        "bin_edges": edges.tolist(),
        "histogram": histogram.tolist(),
        "weights": np.round(weights, 6).tolist(),
        "eps": eps,
        "w_min": W_MIN,
        "w_max": W_MAX,
        "smoothing_sigma_ab": smoothing,
        "uniform_mix": uniform_mix if mixing else None,
        "in_gamut_bins": in_gamut,
        **weight_stats(weights, histogram, mask),
        "note_formula": {"eps": NOTE_EPS, "smoothing_sigma_ab": 0.0,
                         **weight_stats(literal, histogram, mask)},
    }


@dataclass(frozen=True)
class ABWeights:
    """Per-bin rebalancing weights and their lookup from ground-truth ab.

    `weights` is (N, N) float32 indexed [a bin, b bin], `bin_edges` the N + 1 edges in ab units
    (the same for a and b, evenly spaced), `eps` the eps of the formula (0 for uniform weights).
    """

    weights: torch.Tensor
    bin_edges: torch.Tensor
    eps: float

    def __post_init__(self) -> None:
        # Python floats, so that a lookup on the GPU never waits for a device-to-host copy.
        object.__setattr__(self, "_low", float(self.bin_edges[0]))
        object.__setattr__(self, "_high", float(self.bin_edges[-1]))

    @classmethod
    def from_prepare_json(cls, info: dict) -> "ABWeights":
        entry = info.get("ab_weights")
        if not entry:
            raise DataError("prepare.json holds no ab_weights",
                            "run recolor prepare again for this folder")
        return cls(
            weights=torch.tensor(entry["weights"], dtype=torch.float32),
            bin_edges=torch.tensor(entry["bin_edges"], dtype=torch.float32),
            eps=float(entry["eps"]),
        )

    @classmethod
    def from_data_dir(cls, data_dir: str | Path) -> "ABWeights":
        """The weights `recolor prepare` computed for DATA (raises DataError if it is not prepared)."""
        from recolor.data.store import read_prepare_json

        return cls.from_prepare_json(read_prepare_json(data_dir))

    @classmethod
    def uniform(cls, bins: int = DEFAULT_BINS) -> "ABWeights":
        """All weights 1: the rebalanced L1 becomes plain L1."""
        return cls(weights=torch.ones(bins, bins),
                   bin_edges=torch.tensor(bin_edges(bins), dtype=torch.float32), eps=0.0)

    @property
    def bins(self) -> int:
        return self.weights.shape[0]

    def to(self, device: torch.device | str) -> "ABWeights":
        return ABWeights(self.weights.to(device), self.bin_edges.to(device), self.eps)

    def lookup(self, ab: torch.Tensor) -> torch.Tensor:
        """Ground-truth ab (B, 2, H, W) in ab units -> weights (B, 1, H, W) float32, on ab's device."""
        weights = self.weights if self.weights.device == ab.device else self.weights.to(ab.device)
        index = bin_index(ab, self.bins, self._low, self._high)
        return weights.flatten()[index].unsqueeze(1)
