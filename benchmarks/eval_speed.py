"""How long `recolor eval` takes per 100 photos: the gray baseline alone, then with a model.

    python benchmarks/eval_speed.py --data ../shared/data/imagenette/val --limit 300 --width 32

The model is an untrained U-Net of the given width (its speed does not depend on its weights).
Perceptual metrics are off unless --perceptual (then the EfficientNet-Lite0 distance runs where its
weights package is installed; VGG, LPIPS and FID only where their weights download). Prints one
line per run: wall and CPU seconds per 100 photos (decoding, Lab, model, metrics: everything) and
the colorization throughput of each row (model forward + Lab -> RGB only). On a shared machine
the CPU seconds move less with the load than the wall seconds: print `uptime` beside them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from recolor.eval.protocol import evaluate
from recolor.nn import UNetGenerator
from recolor.nn.pretrained import save_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--perceptual", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = str(save_generator(UNetGenerator(width=args.width), Path(tmp) / f"unet-w{args.width}"))
        for label, models in (("gray only", []), (f"gray + U-Net width {args.width}", [model])):
            started, cpu = time.perf_counter(), time.process_time()
            report = evaluate(args.data, models, size=args.size, limit=args.limit, batch_size=args.batch_size,
                              device=args.device, workers=args.workers, perceptual=args.perceptual)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows = ", ".join(f"{'gray' if row.model == 'gray' else 'model'} {row.images_per_s:.1f} img/s"
                             for row in report.rows)
            print(f"{label}: {report.n} photos at {args.size} px in {wall:.1f} s = "
                  f"{100 * wall / report.n:.1f} s per 100 photos, {100 * cpu / report.n:.1f} s of CPU "
                  f"(colorization only: {rows}); gray PSNR {report.rows[0].psnr:.2f} dB; "
                  f"unavailable: {', '.join(report.unavailable) or 'none'}")


if __name__ == "__main__":
    main()
