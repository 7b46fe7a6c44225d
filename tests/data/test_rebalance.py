"""AB rebalancing: the note's formula on known histograms, the remedy, the histogram, the lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recolor.data import rebalance as rb
from recolor.errors import DataError


def test_note_formula_on_a_known_histogram():
    # p = 0.9, 0.09, 0.01 and 13 empty bins; eps = 0.01 so max(w_raw) = 1 / eps = 100 (empty bins).
    histogram = np.zeros((4, 4))
    histogram[1, 1], histogram[1, 2], histogram[2, 1] = 90, 9, 1
    weights = rb.rebalance_weights(histogram, eps=0.01)
    expected = np.full((4, 4), 5.0)  # empty: 100 / 100 * 5
    expected[1, 1] = 0.5  # 1/0.91 / 100 * 5 = 0.055 -> floor
    expected[1, 2] = 0.5  # 1/0.10 / 100 * 5 = 0.5
    expected[2, 1] = 2.5  # 1/0.02 / 100 * 5 = 2.5
    np.testing.assert_allclose(weights, expected)


def test_note_formula_with_tiny_eps_puts_every_seen_color_at_the_floor():
    histogram = np.zeros((5, 5))
    histogram[2, 2], histogram[2, 3], histogram[0, 4] = 1000, 10, 1
    weights = rb.rebalance_weights(histogram, eps=1e-6)
    seen = histogram > 0
    assert np.all(weights[seen] == 0.5)  # even the rarest color seen (p = 1e-3)
    assert np.all(weights[~seen] == 5.0)  # only colors never seen get more


def test_mixing_with_the_uniform_distribution_is_zhangs_formula():
    rng = np.random.default_rng(0)
    histogram = rng.integers(0, 1000, (6, 6)).astype(float)
    mask = np.ones((6, 6), dtype=bool)
    mask[0, 0] = mask[5, 5] = False
    histogram[~mask] = 0
    q, lam = int(mask.sum()), 0.5
    weights = rb.rebalance_weights(histogram, eps=rb.uniform_mix_eps(lam, q), mask=mask)
    p = histogram / histogram.sum()
    zhang = 1 / ((1 - lam) * p + lam / q)
    expected = np.clip(zhang / zhang.max() * 5, 0.5, 5)
    np.testing.assert_allclose(weights[mask], expected[mask], rtol=1e-9)


def test_remedy_spreads_weights_where_the_literal_formula_floors_them():
    # A natural-looking distribution: a narrow peak at gray with a long, thin tail.
    edges = rb.bin_edges(33)
    centers = (edges[:-1] + edges[1:]) / 2
    a, b = np.meshgrid(centers, centers, indexing="ij")
    radius = np.hypot(a, b)
    histogram = np.round(1e7 * np.exp(-radius / 15)) * rb.gamut_mask(33)
    result = rb.compute_ab_weights(histogram.astype(np.int64))
    assert result["note_formula"]["fraction_bins_at_floor"] > 0.95
    assert result["note_formula"]["mean_pixel_weight"] == pytest.approx(0.5, abs=1e-3)
    assert result["fraction_bins_at_floor"] < 0.1
    assert result["mean_pixel_weight"] > 1.0
    weights = np.asarray(result["weights"])
    assert weights[16, 16] < weights[16, 22] < weights[16, 28]  # rarer with saturation: heavier
    assert weights.min() >= 0.5 and weights.max() == pytest.approx(5.0)
    assert result["eps"] == pytest.approx(1 / result["in_gamut_bins"])  # λ = 0.5: eps = 1/Q
    json.dumps(result)  # goes into prepare.json as it is


def test_gaussian_smooth_keeps_mass_away_from_the_border_and_spreads_it():
    values = np.zeros((9, 9))
    values[4, 4] = 1.0
    smoothed = rb.gaussian_smooth(values, 1.0)
    assert smoothed.sum() == pytest.approx(1.0)
    assert smoothed[4, 4] < 0.2 and smoothed[4, 5] == pytest.approx(smoothed[5, 4])
    assert smoothed[4, 5] > smoothed[4, 6] > 0


def test_empty_histogram_is_a_data_error():
    with pytest.raises(DataError):
        rb.rebalance_weights(np.zeros((3, 3)), eps=0.1)


def test_histogram_bins_known_colors():
    # red (a 80.1, b 67.2), neutral gray (a = b = 0) and blue (a 79.2, b -107.9).
    rgb = torch.tensor([[255, 0, 0], [128, 128, 128], [0, 0, 255]], dtype=torch.uint8)
    counts = rb.rgb_histogram(rgb.T.reshape(1, 3, 3, 1), 33)
    width = 220 / 33
    red = (int((80.09 + 110) // width), int((67.20 + 110) // width))
    blue = (int((79.19 + 110) // width), int((-107.86 + 110) // width))
    assert counts[red] == 1 and counts[16, 16] == 1 and counts[blue] == 1
    assert counts.sum() == 3


def test_gamut_mask_holds_gray_and_the_primaries_but_not_the_corners():
    mask = rb.gamut_mask(33)
    assert mask[16, 16]
    assert not mask[0, 32] and not mask[0, 0]  # a = -110, b = +-110: no sRGB color
    assert 300 < mask.sum() < 33 * 33 - 100


def test_lookup_returns_the_weight_of_each_pixels_bin():
    weights = torch.arange(9, dtype=torch.float32).view(3, 3)
    ab_weights = rb.ABWeights(weights=weights, bin_edges=torch.tensor([-90.0, -30, 30, 90]), eps=0.1)
    ab = torch.tensor([[-60.0, -60.0], [0.0, 60.0], [60.0, 0.0], [200.0, -200.0]]).T.reshape(1, 2, 2, 2)
    looked_up = ab_weights.lookup(ab)
    assert looked_up.shape == (1, 1, 2, 2)
    # [a bin, b bin]: (0, 0) -> 0, (1, 2) -> 5, (2, 1) -> 7, (2, 0) clamped -> 6
    assert looked_up.flatten().tolist() == [0.0, 5.0, 7.0, 6.0]


def test_lookup_under_bfloat16_and_uniform():
    ab = torch.randn(2, 2, 4, 4, dtype=torch.bfloat16) * 50
    assert torch.equal(rb.ABWeights.uniform().lookup(ab), torch.ones(2, 1, 4, 4))
    assert rb.ABWeights.uniform().weights.shape == (33, 33)


def test_weights_round_trip_through_prepare_json():
    histogram = np.zeros((33, 33), dtype=np.int64)
    histogram[16, 16], histogram[25, 25] = 1000, 3
    info = {"ab_weights": json.loads(json.dumps(rb.compute_ab_weights(histogram)))}
    ab_weights = rb.ABWeights.from_prepare_json(info)
    assert ab_weights.weights.shape == (33, 33) and ab_weights.weights.dtype == torch.float32
    assert len(ab_weights.bin_edges) == 34 and ab_weights.eps > 0
    gray, rare = torch.zeros(1, 2, 1, 1), torch.full((1, 2, 1, 1), 62.0)
    assert ab_weights.lookup(rare).item() > 2 * ab_weights.lookup(gray).item()
    with pytest.raises(DataError):
        rb.ABWeights.from_prepare_json({})


def test_color_counter_gives_the_direct_histogram():
    rgb = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    rgb[0] = 200  # repeated colors are counted, not converted, more than once
    counter = rb.ColorCounter()
    counter.add(rgb[:2])
    counter.add(rgb[2:])
    assert torch.equal(counter.histogram(33, chunk=100), rb.rgb_histogram(rgb, 33))
