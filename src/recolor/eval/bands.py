"""Figures per band of ground-truth chroma: where a model's colour, its loss and its spurious colour sit.

`scripts/neutral_pixels.py` runs a model over photos and adds up, per band of ground-truth chroma
(0-5 is eval's "neutral", then 5-10, 10-20, 20-40, 40 and more by default): the pixels, their AB
rebalancing weights, their rebalanced L1 (weighted and not), the pixels the model colours strongly
(the threshold of eval's `spurious`), and the predicted and true chroma. `band_sums` does one batch,
`band_figures` turns the sums of a whole set into shares and means. Pure functions on tensors;
chroma in ab units, ab in network units (ab / 110) where the loss is concerned, as in training.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from recolor.eval.metrics import NEUTRAL_CHROMA, SPURIOUS_CHROMA

# Band edges in ab units; the first band is eval's neutral (chroma < 5), the last is open.
DEFAULT_EDGES: tuple[float, ...] = (0.0, NEUTRAL_CHROMA, 10.0, 20.0, 40.0, math.inf)
SUMS = ("pixels", "weight", "loss", "l1", "strong", "chroma_pred", "chroma_true")


def band_index(chroma_true: torch.Tensor, edges: Sequence[float] = DEFAULT_EDGES) -> torch.Tensor:
    """Band of each pixel, 0 .. len(edges) − 2: band i holds edges[i] <= chroma < edges[i + 1].

    The inner edges decide; chroma below edges[0] or from edges[-1] on falls into the edge bands.
    """
    inner = torch.tensor(list(edges[1:-1]), dtype=torch.float32, device=chroma_true.device)
    return torch.bucketize(chroma_true.float().contiguous(), inner, right=True)


def pixel_l1(ab_pred: torch.Tensor, ab_true: torch.Tensor) -> torch.Tensor:
    """Per-pixel L1 of ab (N, 2, H, W) in network units, the mean of |Δa| and |Δb|: (N, H, W).

    Times the rebalancing weight and averaged over pixels it is `recolor.train.losses.rebalanced_l1`.
    """
    return (ab_pred.float() - ab_true.float()).abs().mean(dim=1)


def band_sums(chroma_true: torch.Tensor, chroma_pred: torch.Tensor, weights: torch.Tensor, l1: torch.Tensor, *,
              edges: Sequence[float] = DEFAULT_EDGES, strong: float = SPURIOUS_CHROMA) -> dict[str, torch.Tensor]:
    """One batch's sums per band, each a float64 tensor (bands,), keyed as SUMS.

    chroma_true, chroma_pred (N, H, W) in ab units; weights (N, H, W) the rebalancing weight of each
    pixel; l1 (N, H, W) its unweighted `pixel_l1`. "loss" sums weight · l1 (the rebalanced L1),
    "strong" counts pixels whose predicted chroma exceeds `strong`.
    """
    bands = len(edges) - 1
    index = band_index(chroma_true, edges).flatten()
    values = {
        "pixels": None,
        "weight": weights.float().flatten(),
        "loss": (weights.float() * l1.float()).flatten(),
        "l1": l1.float().flatten(),
        "strong": (chroma_pred.float() > strong).flatten().float(),
        "chroma_pred": chroma_pred.float().flatten(),
        "chroma_true": chroma_true.float().flatten(),
    }
    return {key: torch.bincount(index, weights=None if value is None else value.double(), minlength=bands).double()
            for key, value in values.items()}


def add_sums(total: dict[str, torch.Tensor] | None, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The running sums with one more batch's (`total` None: the first batch)."""
    return dict(batch) if total is None else {key: total[key] + batch[key] for key in SUMS}


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def band_figures(sums: dict[str, torch.Tensor], edges: Sequence[float] = DEFAULT_EDGES) -> dict:
    """Shares and means from a set's `band_sums`: one dict per band and the figures over all pixels.

    Per band: `pixel_share` (of all pixels), `mean_weight`, `loss_share` (of the rebalanced L1) and
    `l1_share` (of the unweighted L1), `strong` (share of the band's pixels coloured beyond the
    spurious threshold), `mean_chroma_pred`, `mean_chroma_true` and their ratio. Over all pixels:
    `mean_weight`, `loss` and `l1` per pixel, and `spurious` = the neutral band's strong pixels as a
    share of all pixels (eval's figure, when the first band is eval's neutral one).
    """
    totals = {key: float(value.sum()) for key, value in sums.items()}
    bands = []
    for i in range(len(edges) - 1):
        pixels = float(sums["pixels"][i])
        pred = _ratio(float(sums["chroma_pred"][i]), pixels)
        true = _ratio(float(sums["chroma_true"][i]), pixels)
        bands.append({
            "chroma": [edges[i], edges[i + 1]],
            "pixels": int(pixels),
            "pixel_share": _ratio(pixels, totals["pixels"]),
            "mean_weight": _ratio(float(sums["weight"][i]), pixels),
            "loss_share": _ratio(float(sums["loss"][i]), totals["loss"]),
            "l1_share": _ratio(float(sums["l1"][i]), totals["l1"]),
            "strong": _ratio(float(sums["strong"][i]), pixels),
            "mean_chroma_pred": pred,
            "mean_chroma_true": true,
            "chroma_ratio": _ratio(pred, true) if pred is not None and true is not None else None,
        })
    return {
        "bands": bands,
        "all": {
            "pixels": int(totals["pixels"]),
            "mean_weight": _ratio(totals["weight"], totals["pixels"]),
            "loss": _ratio(totals["loss"], totals["pixels"]),
            "l1": _ratio(totals["l1"], totals["pixels"]),
            "spurious": _ratio(float(sums["strong"][0]), totals["pixels"]),
            "mean_chroma_pred": _ratio(totals["chroma_pred"], totals["pixels"]),
            "mean_chroma_true": _ratio(totals["chroma_true"], totals["pixels"]),
        },
    }
