"""Training throughput (images/s) of each recipe, through the real training loop.

For every recipe x width x crop size x precision it prepares nothing new: one synthetic prepared
folder per crop size (made once with `recolor prepare` in a temporary folder), then
`recolor.train.train` runs 2 epochs of --steps batches. Epoch 1 warms up (oneDNN / cuDNN pick
their kernels); images/s is epoch 2's, as the run's metrics.jsonl reports it: batches x batch size
over the wall time of the batch loop (data loading, Lab conversion, critic and generator steps;
not validation or checkpoint writing).

progan runs with the offline `vgg16-random` backbone: the same VGG-16 layers and cost as the
ImageNet weights. wgan counts critic steps: with --steps 5 each epoch has 4 critic-only batches
and one batch with a critic and a generator step, its real mix.

    python benchmarks/train_throughput.py                    # the full table (several minutes on a CPU)
    python benchmarks/train_throughput.py --sizes 128 --widths 32 --precisions fp32
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/ put it on sys.path)


def _photos(folder: Path, count: int, size: int, seed: int) -> None:
    """Smooth random color fields with some texture: colored, never gray, so prepare keeps them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size] / size
    for index in range(count):
        channels = []
        for _ in range(3):
            fx, fy, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 6.3)
            channels.append(0.5 + 0.35 * np.sin(2 * np.pi * (fx * x + fy * y) + phase))
        rgb = np.stack(channels, axis=-1) + rng.normal(0, 0.03, (size, size, 3))
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{index:04d}.png")


def prepared_folder(root: Path, size: int, images: int) -> Path:
    from recolor.data.prepare import prepare

    source = root / f"photos-{size}"
    _photos(source / "train", images, size, seed=size)
    _photos(source / "val", 8, size, seed=size + 1)
    data = root / f"data-{size}"
    prepare(str(source), data, size=size, workers=0, console=Console(quiet=True))
    return data


def measure(recipe: str, data: Path, out: Path, *, width: int, precision: str, batch_size: int, steps: int,
            device: str, workers: int) -> float:
    from recolor.train import train

    result = train(recipe, data, out=out, name=f"{recipe}-{width}-{precision}-{time.monotonic_ns()}", settings={
        "epochs": 2, "steps_per_epoch": steps, "batch_size": batch_size, "width": width, "precision": precision,
        "device": device, "workers": workers, "val_images": 0, "sample_images": 0,
        "perceptual_backbone": "vgg16-random"})
    return result.metrics[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["gan", "wgan", "progan"])
    parser.add_argument("--widths", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="batches per epoch (2 epochs; the 2nd is timed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = args.device
    where = cpu_name() if device == "cpu" else torch.cuda.get_device_name(0)
    print(f"# training throughput: {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"batch {args.batch_size}, {args.steps} timed batches after {args.steps} warm-up batches")
    print("| recipe | width | px | fp32 img/s | bf16 img/s |" if args.precisions == ["fp32", "bf16"]
          else "| recipe | width | px | " + " | ".join(f"{p} img/s" for p in args.precisions) + " |")
    print("|---|---|---|" + "---|" * len(args.precisions))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = {size: prepared_folder(root, size, images=max(16, 2 * args.batch_size * args.steps))
                for size in args.sizes}
        for recipe in args.recipes:
            for width in args.widths:
                for size in args.sizes:
                    rates = []
                    for precision in args.precisions:
                        rate = measure(recipe, data[size], root / "runs", width=width, precision=precision,
                                       batch_size=args.batch_size, steps=args.steps, device=device,
                                       workers=args.workers)
                        rates.append(rate)
                        rows.append({"recipe": recipe, "width": width, "size": size, "precision": precision,
                                     "images_per_s": rate})
                    print(f"| {recipe} | {width} | {size} | " + " | ".join(f"{r:.1f}" for r in rates) + " |",
                          flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": where, "threads": torch.get_num_threads(),
                                         "batch_size": args.batch_size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
