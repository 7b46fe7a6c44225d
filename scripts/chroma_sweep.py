"""Is a model wrong in hue, or only too strong? Score its ab scaled by several factors.

    python scripts/chroma_sweep.py MODEL [--data VAL] [--size 256] [--limit 160] [--scales 1 0.75 0.5 0.25 0]

Each photo goes through the `recolor eval` protocol (same crops, same metrics), but the model's
predicted ab is multiplied by each factor before the join with the true L. If PSNR rises a lot as
the factor drops while colorfulness stays above half the ground truth's, the model's hues are
roughly right and its colors too strong: train with less pull toward saturation (flatter AB
rebalancing, a larger L1 weight) rather than longer. Factor 0 is the gray baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from recolor.eval import metrics  # noqa: E402
from recolor.color import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab  # noqa: E402
from recolor.eval.protocol import collate_photos, open_images  # noqa: E402
from recolor.hub.registry import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a built-in name, run folder or weights folder")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "imagenette" / "val")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=160)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25, 0.0])
    args = parser.parse_args()

    dataset = open_images(args.data, size=args.size, limit=args.limit)
    loader = DataLoader(dataset, batch_size=16, collate_fn=collate_photos)  # what `recolor eval` batches
    generator, _ = load_model(args.model, device="cpu")
    psnr = {scale: 0.0 for scale in args.scales}
    colorfulness = {scale: 0.0 for scale in args.scales}
    count = 0
    with torch.inference_mode():
        for batch, _, _ in loader:
            if batch is None:  # every photo of the batch left out by the protocol
                continue
            rgb = batch.float() / 255
            lightness = rgb_to_lab(rgb)[:, :1]
            ab = denormalize_ab(generator(normalize_l(lightness)).float())
            for scale in args.scales:
                pred = lab_to_rgb(torch.cat((lightness, ab * scale), dim=1))
                psnr[scale] += metrics.psnr(pred, rgb).sum().item()
                colorfulness[scale] += metrics.colorfulness(pred).sum().item()
            count += rgb.shape[0]
    print(f"{args.model}: {count} photos of {args.data} at {args.size} px")
    print("ab scale  PSNR    colorfulness")
    for scale in args.scales:
        print(f"{scale:8.2f}  {psnr[scale] / count:6.2f}  {colorfulness[scale] / count:6.1f}")


if __name__ == "__main__":
    main()
