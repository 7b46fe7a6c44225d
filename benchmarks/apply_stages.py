"""Where `recolor apply`'s time goes, stage by stage, against the floor of only decoding and encoding.

    PYTHONPATH=src python benchmarks/apply_stages.py [--model SPEC] [--count-1mp 8] [--count-12mp 2]

For each case (1 MP = 1224 x 816, 12 MP = 4240 x 2832; synthetic grayscale JPEGs, quality 90,
written back as RGB JPEG quality 95, as `recolor apply` does) it prints, in one process:

- the stages, run one after another on each photo (ms per photo): decode (`read_image`), network L
  (shrink to render size + CIE L), network (batches of `--batch-size`, time per photo), ab
  upsampling and join (`colorize.join`), encode (`write_image`);
- `engine`: images/s of `colorize.colorize_files` (the pipelined engine `recolor apply` runs);
- `floor`: images/s of only `read_image` + `write_image(photo.rgb, like=photo)` on the same files,
  one after another (`floor 1 thread`) and in a pool of the engine's I/O threads (`floor pooled`).
  The goal of issue 8 is engine >= 0.5 x floor on 1 MP photos.

`--model SPEC` is resolved through `recolor.models.load_model` (a built-in name, a run folder, a Hub
id). Without it: the packaged default model when this install ships it, else a U-Net of `--width`
(32) with random weights (speed does not depend on the weights). Every timing is the best of
`--repeat` runs (the machine is shared; the best run is the least disturbed), after one warm-up
photo. The load average is printed beside the figures: on a loaded machine they are low. Each
figure also comes as CPU time (this process's, all threads) per photo, which other processes
disturb less: `floor CPU / engine CPU` is what engine / floor would be on an idle machine where
both keep every core busy.
The stages run with torch at the engine's network threads (`--network-threads`, default: the
cores the I/O threads leave), as the engine runs them.

`--precision-check` also prints, on scikit-image's photos made gray, how far the bf16 network's
output is from the fp32 one: mean and max |Δab| (CIE units) and the PSNR (dB) between the two
full-size results of `colorize.join`. `--compile-check` times torch.compile on the Colorizer's
network: its first call (what a CLI run would pay) and the network stage after it.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from recolor import colorize
from recolor.imageio import read_image, write_image
from recolor.models import BUILTIN_MODELS, DEFAULT_MODEL, find_builtin, load_model

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/ put it on sys.path)

CASES = {"1mp": (1224, 816), "12mp": (4240, 2832)}  # (width, height), 3:2


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def make_photos(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    """Synthetic grayscale JPEGs: smooth shapes, a disc, and grain (so JPEG has work to do)."""
    width, height = size
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for index in range(count):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        base = 128 + 60 * np.sin(x / (40 + 10 * index)) * np.cos(y / 55)
        base += 50 * (np.hypot(x - cx, y - cy) < min(width, height) / 4)
        base += rng.normal(0, 6, size=base.shape).astype(np.float32)
        path = folder / f"photo{index:03d}.jpg"
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def best(function, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeat` calls of `function()`, each the least of its kind."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return min(walls), min(cpus)


def stages(paths: list[Path], out: Path, colorizer: colorize.Colorizer, options: colorize.ApplyOptions,
           repeat: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per photo of each stage, run one after another (best of `repeat`)."""
    photos = [read_image(p) for p in paths]
    shapes = [colorize.render_shape(*p.size, options.render_size) for p in photos]
    smalls = [colorize.network_lightness(p, s) for p, s in zip(photos, shapes)]
    batches = [torch.stack(smalls[i:i + options.batch_size]) for i in range(0, len(smalls), options.batch_size)]
    abs_ = [ab for batch in batches for ab in colorizer.ab(batch)]
    results = [colorize.join(p, ab, l, upsample=options.upsample) for p, ab, l in zip(photos, abs_, smalls)]
    timed = {
        "decode": lambda: [read_image(p) for p in paths],
        "network L": lambda: [colorize.network_lightness(p, s) for p, s in zip(photos, shapes)],
        "network": lambda: [colorizer.ab(batch) for batch in batches],
        "upsample + join": lambda: [colorize.join(p, ab, l, upsample=options.upsample)
                                    for p, ab, l in zip(photos, abs_, smalls)],
        "encode": lambda: [write_image(out / p.name, rgb, like=photo, quality=options.quality)
                           for p, rgb, photo in zip(paths, results, photos)],
    }
    return {name: tuple(t / len(paths) for t in best(function, repeat)) for name, function in timed.items()}


def floor(paths: list[Path], out: Path, *, threads: int, quality: int, repeat: int) -> tuple[float, float]:
    """(images/s, CPU s per image) of decoding and encoding alone (best of `repeat`), in `threads` threads."""
    def one(path: Path) -> None:
        photo = read_image(path)
        write_image(out / path.name, photo.rgb, like=photo, quality=quality)

    if threads == 1:
        wall, cpu = best(lambda: [one(p) for p in paths], repeat)
    else:
        with ThreadPoolExecutor(threads) as pool:
            wall, cpu = best(lambda: list(pool.map(one, paths)), repeat)
    return len(paths) / wall, cpu / len(paths)


def engine(paths: list[Path], out: Path, colorizer: colorize.Colorizer, options: colorize.ApplyOptions,
           repeat: int) -> tuple[float, float]:
    """(images/s, CPU s per image) of the engine (best of `repeat`)."""
    plan = colorize.plan_jobs([str(p) for p in paths], out=out, overwrite=True)

    def run() -> None:
        failed = [r for r in colorize.colorize_files(plan.jobs, colorizer, options=options) if r.error]
        if failed:
            raise SystemExit(f"{len(failed)} failed: {failed[0].error}")

    wall, cpu = best(run, repeat)
    return len(paths) / wall, cpu / len(paths)


def precision_check(generator: torch.nn.Module, render_size: int) -> None:
    """fp32 vs bf16 network, through `Colorizer` and `join`, on scikit-image's photos made gray."""
    import skimage.data

    from recolor.imageio import Photo

    generator = copy.deepcopy(generator).cpu()  # the check is about the CPU's bf16, whatever --device
    fp32 = colorize.Colorizer(generator, torch.device("cpu"), precision="fp32")
    bf16 = colorize.Colorizer(generator, torch.device("cpu"), precision="bf16")
    print("\nfp32 vs bf16 network (Colorizer.ab, then join at full size), scikit-image photos made gray:")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        image = getattr(skimage.data, name)()
        gray = image if image.ndim == 2 else np.asarray(Image.fromarray(image[..., :3]).convert("L"))
        photo = Photo(path=None, rgb=np.repeat(gray[..., None], 3, axis=2), alpha=None, format="PNG", mode="L",
                      bit_depth=8, icc_profile=None, exif=None, dpi=None, is_grayscale=True)
        small = colorize.network_lightness(photo, colorize.render_shape(*photo.size, render_size))
        ab32, ab16 = fp32.ab(small[None])[0], bf16.ab(small[None])[0]
        error = (ab32 - ab16).abs()
        mse = np.mean((colorize.join(photo, ab32, small).astype(np.float64) - colorize.join(photo, ab16, small)) ** 2)
        psnr = 10 * np.log10(255**2 / mse) if mse > 0 else float("inf")
        print(f"  {name:>10} {photo.size[0]}x{photo.size[1]}: |ab| mean {ab32.abs().mean():5.2f}; |Δab| mean "
              f"{error.mean():.3f} ({error.mean() / ab32.abs().mean():.2%} of |ab|), max {error.max():.2f}; "
              f"RGB PSNR fp32 vs bf16 {psnr:.1f} dB")


def compile_check(colorizer: colorize.Colorizer, batch: torch.Tensor, repeat: int) -> None:
    """The network stage eager and under torch.compile, and what compiling costs once."""
    eager = best(lambda: colorizer.ab(batch), repeat)[0] / len(batch)
    colorizer._network = torch.compile(colorizer._network)  # the inference copy the Colorizer runs
    start = time.perf_counter()
    colorizer.ab(batch)
    first = time.perf_counter() - start
    compiled = best(lambda: colorizer.ab(batch), repeat)[0] / len(batch)
    print(f"\ntorch.compile: first call {first:.1f} s; network {compiled * 1000:.1f} ms/photo compiled against "
          f"{eager * 1000:.1f} eager (batch {len(batch)}), {load()}")


def network_gflop(generator: torch.nn.Module, shape: tuple[int, int]) -> float:
    """GFLOP of one forward pass on one image of `shape` (h, w), multiply and add counted apart."""
    from torch.utils.flop_counter import FlopCounterMode

    cpu = copy.deepcopy(generator).cpu().float()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        cpu(torch.zeros(1, 1, *shape))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model spec for recolor.models.load_model "
                        "(default: the packaged default model if shipped, else a random U-Net of --width)")
    parser.add_argument("--width", type=int, default=32, help="U-Net width of the random model")
    parser.add_argument("--count-1mp", type=int, default=8)
    parser.add_argument("--count-12mp", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=colorize.ApplyOptions.batch_size)
    parser.add_argument("--upsample", default="bilinear", choices=colorize.UPSAMPLE_MODES)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each timing; the best is printed")
    parser.add_argument("--precision", default="auto", help="the network's: auto, fp32 or bf16")
    parser.add_argument("--device", default="cpu", help="where the network runs: cpu, cuda, cuda:1, ...")
    parser.add_argument("--network-threads", type=int, default=None,
                        help="torch threads for the network (default: the engine's choice)")
    parser.add_argument("--precision-check", action="store_true", help="also print fp32 vs bf16 PSNR")
    parser.add_argument("--compile-check", action="store_true", help="also time torch.compile of the network")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = args.model
        if spec is None and find_builtin(BUILTIN_MODELS[DEFAULT_MODEL]) is not None:
            spec = DEFAULT_MODEL
        if spec is None:
            from recolor.nn import UNetGenerator
            from recolor.nn.pretrained import save_generator

            torch.manual_seed(0)
            spec = str(root / "model")
            save_generator(UNetGenerator(width=args.width), Path(spec))
            label = f"random U-Net width {args.width} (the default model {DEFAULT_MODEL!r} is not shipped yet)"
        else:
            label = spec
        device = torch.device(args.device)
        generator, config = load_model(spec, device=device)
        colorizer = colorize.Colorizer(generator, device, precision=args.precision)
        options = colorize.ApplyOptions(batch_size=args.batch_size, upsample=args.upsample,
                                        network_threads=args.network_threads)
        threads = options.network_threads or max(1, (os.cpu_count() or 1) - options.io_threads)
        print(f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
              f"{load()}")
        print(f"model: {label}, width {config['generator']['width']}, on {device} in {colorizer.precision}; "
              f"render size {options.render_size}, batch {options.batch_size}, upsample {options.upsample}, "
              f"io threads {options.io_threads}, network threads {threads}, best of {args.repeat}")
        shape = colorize.render_shape(*CASES["1mp"], options.render_size)
        print(f"network: {network_gflop(generator, shape):.1f} GFLOP per {shape[1]}x{shape[0]} image "
              "(1 MP and 12 MP alike)")
        for case, count in (("1mp", args.count_1mp), ("12mp", args.count_12mp)):
            if count == 0:
                continue
            folder, out = root / case, root / f"out-{case}"
            folder.mkdir()
            out.mkdir()
            paths = make_photos(folder, CASES[case], count)
            engine(paths[:1], out, colorizer, options, 1)  # warm-up: first-call allocations, kernels
            torch.set_num_threads(threads)  # as colorize_files runs the network
            per_stage = stages(paths, out, colorizer, options, args.repeat)
            engine_rate, engine_cpu = engine(paths, out, colorizer, options, args.repeat)
            floor_one, _ = floor(paths, out, threads=1, quality=options.quality, repeat=args.repeat)
            floor_pool, floor_cpu = floor(paths, out, threads=options.io_threads, quality=options.quality,
                                          repeat=args.repeat)
            width, height = CASES[case]
            total, total_cpu = (sum(t[i] for t in per_stage.values()) for i in (0, 1))
            print(f"\n{case} ({width}x{height}, {count} photos), {load()}")
            print(f"  {'stage':>16}  {'wall ms/photo':>13}  {'share':>6}  {'CPU ms/photo':>12}")
            for name, (seconds, cpu) in per_stage.items():
                print(f"  {name:>16}: {seconds * 1000:13.1f}  {seconds / total:6.1%}  {cpu * 1000:12.1f}")
            print(f"  {'stages in sum':>16}: {total * 1000:13.1f}  {'':>6}  {total_cpu * 1000:12.1f}"
                  f"   = {1 / total:.2f} images/s")
            print(f"  {'engine':>16}: {engine_rate:6.2f} images/s, {engine_cpu * 1000:6.1f} CPU ms/photo")
            print(f"  {'floor 1 thread':>16}: {floor_one:6.2f} images/s")
            print(f"  {'floor pooled':>16}: {floor_pool:6.2f} images/s, {floor_cpu * 1000:6.1f} CPU ms/photo")
            print(f"  {'engine / floor':>16}: {engine_rate / floor_pool:.2f} (images/s, pooled floor), "
                  f"{engine_rate / floor_one:.2f} (1-thread floor); CPU cost floor / engine "
                  f"{floor_cpu / engine_cpu:.2f}")
        if args.precision_check:
            precision_check(generator, options.render_size)
        if args.compile_check:
            torch.set_num_threads(threads)
            shape = colorize.render_shape(*CASES["1mp"], options.render_size)
            compile_check(colorizer, torch.rand(options.batch_size, *shape) * 100, args.repeat)


if __name__ == "__main__":
    main()
