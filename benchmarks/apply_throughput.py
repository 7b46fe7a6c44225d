"""Throughput and peak memory of `recolor apply`'s engine on 1 MP and 24 MP photos, on the CPU.

    PYTHONPATH=src python benchmarks/apply_throughput.py [--width 32] [--count-1mp 16] [--count-24mp 3]

Each case runs in a fresh child process so that its peak resident memory (ru_maxrss) is its own.
"baseline" is the child's RSS after importing torch and loading the model, before any photo;
"peak - baseline" is what colorizing costs in memory (at most `--pixel-budget` pixels of photos are
held at once; 1 means one photo at a time). The model has random weights (speed does not
depend on them). The photos are synthetic grayscale JPEGs (smooth shapes + noise, quality 90).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {"1mp": (1224, 816), "24mp": (6000, 4000)}  # (width, height): 1.0 MP and 24.0 MP, 3:2
DEFAULT_BUDGET = 64_000_000  # recolor.colorize.DEFAULT_PIXEL_BUDGET (not imported: keeps the parent light)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _make_photos(folder: Path, size: tuple[int, int], count: int) -> None:
    import numpy as np
    from PIL import Image

    width, height = size
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        base = 128 + 60 * np.sin(x / (40 + 10 * index)) * np.cos(y / 55)
        base += 50 * (np.hypot(x - cx, y - cy) < min(width, height) / 4)
        base += rng.normal(0, 6, size=base.shape).astype(np.float32)
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"photo{index:03d}.jpg", quality=90)


def child(case: str, model: str, photos: str, out: str, *, batch_size: int, upsample: str,
          pixel_budget: int, io_threads: int | None) -> None:
    import torch

    from recolor import colorize
    from recolor.models import load_model

    generator, _ = load_model(model, device="cpu")
    colorizer = colorize.Colorizer(generator, torch.device("cpu"))
    plan = colorize.plan_jobs([photos], out=Path(out), overwrite=True)
    baseline = _rss_mb()  # torch, the model and the interpreter: before any photo
    options = colorize.ApplyOptions(batch_size=batch_size, upsample=upsample, pixel_budget=pixel_budget,
                                    io_threads=io_threads or colorize.ApplyOptions.io_threads)
    # Warm-up on one photo (first-call allocations, kernel selection) outside the timing.
    colorize.colorize_files(plan.jobs[:1], colorizer, options=options)
    start = time.perf_counter()
    results = colorize.colorize_files(plan.jobs, colorizer, options=options)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    failed = [r for r in results if r.error is not None]
    if failed:
        raise SystemExit(f"{len(failed)} failed: {failed[0].error}")
    print(json.dumps({"case": case, "images": len(results), "seconds": round(seconds, 2),
                      "images_per_s": round(len(results) / seconds, 3), "baseline_mb": round(baseline),
                      "peak_mb": round(peak), "peak_minus_baseline_mb": round(peak - baseline),
                      "torch_threads": torch.get_num_threads(), "upsample": upsample, "pixel_budget": pixel_budget,
                      "io_threads": options.io_threads}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32, help="U-Net width of the random model")
    parser.add_argument("--count-1mp", type=int, default=16)
    parser.add_argument("--count-24mp", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--upsample", default="bilinear", choices=("bilinear", "guided"))
    parser.add_argument("--pixel-budget", type=int, default=None,
                        help="pixels of photos held at once (default: the engine's; 1: one photo at a time)")
    parser.add_argument("--io-threads", type=int, default=None, help="decoding and encoding threads (default: the engine's)")
    parser.add_argument("--child", nargs=4, metavar=("CASE", "MODEL", "PHOTOS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, batch_size=args.batch_size, upsample=args.upsample,
              pixel_budget=args.pixel_budget or DEFAULT_BUDGET, io_threads=args.io_threads)
        return

    import torch

    from recolor.nn import UNetGenerator
    from recolor.nn.pretrained import save_generator

    budget = args.pixel_budget or DEFAULT_BUDGET
    print(f"CPU: {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at start), torch {torch.__version__}, "
          f"U-Net width {args.width}, render size 256, batch size {args.batch_size}, upsample {args.upsample}, "
          f"pixel budget {budget:,}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        save_generator(UNetGenerator(width=args.width), root / "model")
        for case, count in (("1mp", args.count_1mp), ("24mp", args.count_24mp)):
            photos = root / case
            photos.mkdir()
            _make_photos(photos, CASES[case], count)
            width, height = CASES[case]
            command = [sys.executable, __file__, "--batch-size", str(args.batch_size), "--upsample", args.upsample,
                       "--pixel-budget", str(budget), *(["--io-threads", str(args.io_threads)] if args.io_threads else []),
                       "--child", case, str(root / "model"), str(photos), str(root / f"out-{case}")]
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            result = json.loads(line)
            own = width * height * 3 / 2**20
            print(f"{case:>5} ({width}x{height}, {count} photos): {result['images_per_s']:.2f} images/s, "
                  f"peak RSS {result['peak_mb']} MB (baseline {result['baseline_mb']} MB, "
                  f"+{result['peak_minus_baseline_mb']} MB; one photo's own uint8 pixels: {own:.0f} MB)")


if __name__ == "__main__":
    main()
