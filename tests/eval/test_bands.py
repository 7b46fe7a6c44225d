"""recolor.eval.bands: the per-band sums and figures of scripts/neutral_pixels.py, on tensors worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from recolor.eval.bands import DEFAULT_EDGES, add_sums, band_figures, band_index, band_sums, pixel_l1
from recolor.eval.metrics import NEUTRAL_CHROMA


def test_band_index_puts_eval_s_neutral_pixels_alone_in_the_first_band():
    chroma = torch.tensor([[[0.0, 4.99, 5.0, 9.99], [10.0, 25.0, 40.0, 120.0]]])
    assert band_index(chroma).tolist() == [[[0, 0, 1, 1], [2, 3, 4, 4]]]
    assert DEFAULT_EDGES[1] == NEUTRAL_CHROMA


def test_pixel_l1_times_weights_is_the_rebalanced_l1():
    from recolor.train.losses import rebalanced_l1

    ab_pred, ab_true = torch.randn(2, 2, 3, 3), torch.randn(2, 2, 3, 3)
    weights = torch.rand(2, 1, 3, 3) + 0.5
    expected = rebalanced_l1(ab_pred, ab_true, weights)
    assert (weights[:, 0] * pixel_l1(ab_pred, ab_true)).mean().item() == pytest.approx(expected.item(), rel=1e-6)


def _image():
    # Four pixels: two neutral (a white shirt), one of chroma 15, one of chroma 50.
    chroma_true = torch.tensor([[[1.0, 3.0], [15.0, 50.0]]])
    chroma_pred = torch.tensor([[[30.0, 2.0], [12.0, 25.0]]])  # the shirt's first pixel painted strongly
    weights = torch.tensor([[[0.5, 0.5], [1.0, 4.0]]])
    l1 = torch.tensor([[[0.2, 0.0], [0.1, 0.2]]])
    return chroma_true, chroma_pred, weights, l1


def test_band_figures_by_hand():
    figures = band_figures(band_sums(*_image()))
    neutral, low, mid, strong, vivid = figures["bands"]
    assert neutral["pixels"] == 2 and neutral["pixel_share"] == 0.5
    assert neutral["mean_weight"] == 0.5 and figures["all"]["mean_weight"] == pytest.approx(1.5)
    # Rebalanced loss: 0.1 + 0 + 0.1 + 0.8 = 1.0, of which the neutral band carries 0.1.
    assert neutral["loss_share"] == pytest.approx(0.1) and vivid["loss_share"] == pytest.approx(0.8)
    assert neutral["l1_share"] == pytest.approx(0.4)
    assert neutral["strong"] == 0.5 and mid["strong"] == 0.0 and vivid["strong"] == 1.0
    assert figures["all"]["spurious"] == pytest.approx(0.25)  # eval's figure: 1 of 4 pixels
    assert neutral["mean_chroma_pred"] == 16.0 and neutral["mean_chroma_true"] == 2.0
    assert neutral["chroma_ratio"] == 8.0 and vivid["chroma_ratio"] == 0.5
    # Empty bands say so rather than divide by zero.
    assert low["pixels"] == 0 and low["mean_weight"] is None and low["chroma_ratio"] is None
    assert strong["pixels"] == 0


def test_sums_add_up_over_batches():
    one = band_sums(*_image())
    two = add_sums(add_sums(None, one), one)
    assert figures_equal(band_figures(two), band_figures(one))
    assert int(two["pixels"].sum()) == 8


def figures_equal(a: dict, b: dict) -> bool:
    for band_a, band_b in zip(a["bands"], b["bands"]):
        for key in ("pixel_share", "mean_weight", "loss_share", "strong", "chroma_ratio"):
            if band_a[key] is None or band_b[key] is None:
                if band_a[key] is not band_b[key]:
                    return False
            elif not math.isclose(band_a[key], band_b[key], rel_tol=1e-9):
                return False
    return True
