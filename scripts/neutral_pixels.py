"""Where does a model's spurious colour come from? Its loss and its colour per band of true chroma.

    python scripts/neutral_pixels.py MODEL --data PHOTOS --weights DATA [--size 256] [--limit N]
        [--floors 1 2] [--out neutral-pixels.json]

MODEL is a built-in name or a weights folder (`recolor.hub.registry.load_model`), PHOTOS a folder
of colour photos read exactly as `recolor eval --data PHOTOS --size 256` reads them (the same
crops, photos left out for the same reasons), DATA a folder written by `recolor prepare` whose
prepare.json holds the AB rebalancing weights of training. For each band of ground-truth chroma
(0-5: eval's "neutral"; 5-10, 10-20, 20-40, 40+) it prints and writes as JSON:

- the pixels' share and their mean rebalancing weight, beside the mean over all pixels;
- the share of the model's rebalanced L1 (and of the unweighted L1) that the band carries;
- the share of the band's pixels the model colours strongly (chroma over eval's 20, measured on
  the output after the gamut clip, as eval does): for the neutral band, as a share of all pixels,
  that is eval's `spurious` figure; and the mean predicted chroma against the true one.

It also gives the value of each loss candidate of issue #24 on this model and these photos
(`recolor.train.losses`): the rebalanced L1 with neutral weights floored at each of --floors,
the neutral-chroma penalty and the colourfulness shortfall, to size their λ against the L1's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from recolor.color import denormalize_ab, lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab  # noqa: E402
from recolor.data.rebalance import ABWeights  # noqa: E402
from recolor.eval import metrics  # noqa: E402
from recolor.eval.bands import DEFAULT_EDGES, add_sums, band_figures, band_sums, pixel_l1  # noqa: E402
from recolor.eval.protocol import collate_photos, open_images  # noqa: E402
from recolor.hub.registry import load_model  # noqa: E402
from recolor.train.losses import (colorfulness_shortfall, floor_neutral_weights, neutral_chroma_penalty,  # noqa: E402
                                  rebalanced_l1)


def _band_name(low: float, high: float) -> str:
    return f"{low:g}+" if high == float("inf") else f"{low:g}-{high:g}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def print_figures(figures: dict) -> None:
    overall = figures["all"]
    print(f"{overall['pixels']:,} pixels; mean rebalancing weight {overall['mean_weight']:.3f}; "
          f"spurious {100 * overall['spurious']:.2f}% of all pixels; rebalanced L1 {overall['loss']:.4f}, "
          f"unweighted {overall['l1']:.4f} (ab/110)")
    print("GT chroma  pixels %  mean w  loss %  L1 %   strong %  chroma pred / true   ratio")
    for band in figures["bands"]:
        ratio = band["chroma_ratio"]
        print(f"{_band_name(*band['chroma']):9}  {_pct(band['pixel_share']):>8}  {band['mean_weight'] or 0:6.3f}  "
              f"{_pct(band['loss_share']):>6}  {_pct(band['l1_share']):>5}  {_pct(band['strong']):>8}  "
              f"{band['mean_chroma_pred'] or 0:8.2f} / {band['mean_chroma_true'] or 0:6.2f}   "
              f"{'—' if ratio is None else f'{ratio:.2f}'}")
    terms = figures["loss_terms"]
    print("loss terms on this model (per-batch means): "
          + ", ".join(f"{key} {value:.5f}" for key, value in terms.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a built-in name or a weights folder")
    parser.add_argument("--data", type=Path, required=True, help="the colour photos (e.g. the selection set)")
    parser.add_argument("--weights", type=Path, required=True, help="a prepared DATA folder (its prepare.json)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="score N photos spread over the set")
    parser.add_argument("--floors", type=float, nargs="*", default=[1.0, 2.0],
                        help="neutral weight floors whose rebalanced L1 to report")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    dataset = open_images(args.data, size=args.size, limit=args.limit)
    loader = DataLoader(dataset, batch_size=16, collate_fn=collate_photos)  # what `recolor eval` batches
    generator, _ = load_model(args.model, device="cpu")
    ab_weights = ABWeights.from_data_dir(args.weights)
    sums = None
    terms: dict[str, float] = {}
    photos = 0
    with torch.inference_mode():
        for batch, _, _ in loader:
            if batch is None:  # every photo of the batch left out by the protocol
                continue
            rgb = batch.float() / 255
            lab = rgb_to_lab(rgb)
            lightness = lab[:, :1]
            ab_true = normalize_ab(lab[:, 1:])
            ab_pred = generator(normalize_l(lightness)).float()
            rgb_pred = lab_to_rgb(torch.cat((lightness, denormalize_ab(ab_pred)), dim=1))
            weights = ab_weights.lookup(lab[:, 1:])
            sums = add_sums(sums, band_sums(metrics.chroma(lab), metrics.chroma(rgb_to_lab(rgb_pred)), weights[:, 0],
                                            pixel_l1(ab_pred, ab_true)))
            count = rgb.shape[0]
            batch_terms = {"rebalanced_l1": rebalanced_l1(ab_pred, ab_true, weights)}
            for floor in args.floors:
                floored = floor_neutral_weights(weights, ab_true, floor)
                batch_terms[f"rebalanced_l1_floor_{floor:g}"] = rebalanced_l1(ab_pred, ab_true, floored)
            batch_terms["neutral_chroma"] = neutral_chroma_penalty(ab_pred, ab_true)
            batch_terms["colorfulness_shortfall"] = colorfulness_shortfall(rgb_pred, rgb)
            for key, value in batch_terms.items():
                terms[key] = terms.get(key, 0.0) + float(value) * count
            photos += count
    if sums is None:
        sys.exit(f"none of the photos under {args.data} could be read")
    figures = {"model": args.model, "data": str(args.data), "weights": str(args.weights), "size": args.size,
               "photos": photos, "thresholds": {"neutral_chroma": metrics.NEUTRAL_CHROMA,
                                                "spurious_chroma": metrics.SPURIOUS_CHROMA},
               **band_figures(sums, DEFAULT_EDGES),
               "loss_terms": {key: value / photos for key, value in terms.items()}}
    print(f"{args.model}: {photos} photos of {args.data} at {args.size} px, weights of {args.weights}")
    print_figures(figures)
    for band in figures["bands"]:  # JSON has no infinity: an open band ends at null
        band["chroma"] = [None if value == float("inf") else value for value in band["chroma"]]
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
