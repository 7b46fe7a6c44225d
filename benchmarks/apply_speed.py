"""`recolor apply` against the floor of only decoding and encoding: marginal cost, start-up, peak memory.

    PYTHONPATH=src python benchmarks/apply_speed.py [--model NAME] [--count-1mp 24] [--count-24mp 3]
        [--device cpu] [--repeat 2] [--apply-args "..."] [--stages [--engine auto|openvino|torch]]

For each case (1 MP = 1224 x 816, 24 MP = 6000 x 4000; synthetic grayscale JPEGs, quality 90,
smooth shapes and grain) it prints, in one run:

- floor: `read_image` + `write_image(photo.rgb, like=photo)` (RGB JPEG at quality 95, as apply
  writes) of the same files in a pool of as many threads as apply's decoders (min(4, cores)), in
  a process of its own: ms per photo, once the process has started;
- apply: the real command, `python -m recolor apply FOLDER --out OUT --overwrite` (with the default
  model unless `--model`), timed from the
  parent, on the N photos and on a folder of the first one alone: its marginal cost per photo is
  (time(N) - time(1)) / (N - 1), its start-up (command to first photo written, less that photo)
  time(1) - marginal;
- the ratio floor / marginal (1 would be apply at the cost of decoding; the goal is >= 0.5) and
  each process's peak resident memory (ru_maxrss from wait4);
- in-process: wall ms per photo from apply's own summary line ("done N ... in X s, R images/s",
  its timer from the first photo read to the last written) and floor / that. The marginal above is
  a difference of two whole runs, whose start-ups (imports) vary by a few tenths of a second from
  run to run: with N = 24 that moves it by 10-20 ms per photo. The in-process figure has no
  start-up in it, and is the one to read for the per-photo cost.

Each figure comes as wall time and as CPU time (the process's, all threads: from wait4 for the
commands, process_time for the floor), which other processes on a shared machine disturb less:
the CPU ratio is what the wall ratio would be on an idle machine where both keep every core busy.

Only the CLI and the image reader and writer are used, so the same script measures an older tree (the
before/after tables of docs/performance.md: run it with PYTHONPATH pointing at each tree, back to
back). Every timing is the best of `--repeat` runs; the load average is printed beside each figure
(on a shared machine the figures are high). `--stages` adds the stages of the current tree in this
process (ms per photo of each, one after another); the engines' precision is benchmarks/engines.py's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {"1mp": (1224, 816), "24mp": (6000, 4000)}  # (width, height), 3:2


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def make_photos(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
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


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS in MB, stdout, CPU seconds) of one child process; exits if it fails."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # Read the pipes without reaping, then reap with wait4 to get this child's peak memory.
    stdout = child.stdout.read()  # type: ignore[union-attr]
    stderr = child.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr.decode()}")
    return wall, usage.ru_maxrss / 1024, stdout.decode(), usage.ru_utime + usage.ru_stime


def image_io():
    """(read_image, write_image) of the tree on PYTHONPATH: recolor.io.read/write, or the one
    module that held both before the layout of issue 22 (recolor.imageio)."""
    try:
        from recolor.io.read import read_image
        from recolor.io.write import write_image
    except ImportError:
        from recolor.imageio import read_image, write_image
    return read_image, write_image


def floor_child(folder: str, out: str, threads: int) -> None:
    """In its own process: ms per photo of decode + encode in `threads` threads (printed)."""
    from concurrent.futures import ThreadPoolExecutor

    read_image, write_image = image_io()

    paths = sorted(Path(folder).glob("*.jpg"))

    def one(path: Path) -> None:
        photo = read_image(path)
        write_image(Path(out) / path.name, photo.rgb, like=photo, quality=95)

    one(paths[0])  # first-call costs (plugin setup) outside the timing
    with ThreadPoolExecutor(threads) as pool:
        start, start_cpu = time.perf_counter(), time.process_time()
        list(pool.map(one, paths))
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(seconds / len(paths) * 1000, cpu / len(paths) * 1000)


def best(repeat: int, function):
    runs = [function() for _ in range(repeat)]
    return min(runs, key=lambda run: run[0])


def stages(folder: Path, out: Path, model: str, device: str, engine: str) -> None:
    """ms per photo of each stage of the current tree, one after another, in this process."""
    import numpy as np

    from recolor.apply.join import join, network_lightness
    from recolor.apply.pipeline import render_shape
    from recolor.engine.choice import open_engine

    read_image, write_image = image_io()
    network = open_engine(model, engine=engine, device=device)
    paths = sorted(folder.glob("*.jpg"))[:8]
    marks = {}

    def timed(name, function):
        start = time.perf_counter()
        value = function()
        marks[name] = (time.perf_counter() - start) / len(paths) * 1000
        return value

    photos = timed("decode", lambda: [read_image(p) for p in paths])
    shapes = [render_shape(*p.size, 256) for p in photos]
    smalls = timed("network L (shrink)", lambda: [network_lightness(p, s) for p, s in zip(photos, shapes)])
    with network.threads(max(1, (os.cpu_count() or 1) - min(4, os.cpu_count() or 1))):
        network.ab(np.stack(smalls[:1]))
        abs_ = timed(f"network ({network.name} {network.precision})", lambda: list(network.ab(np.stack(smalls))))
    results = timed("upsample + join", lambda: [join(p, ab, small) for p, ab, small in zip(photos, abs_, smalls)])
    timed("encode", lambda: [write_image(out / p.name, rgb, like=photo, quality=95)
                             for p, rgb, photo in zip(paths, results, photos)])
    print("    stages, ms per photo: " + ", ".join(f"{name} {ms:.1f}" for name, ms in marks.items()) + f" ({load()})")


def default_model() -> str:
    from recolor.hub.registry import DEFAULT_MODEL

    return DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="--model of recolor apply (default: apply's default model)")
    parser.add_argument("--device", default="cpu", help="--device of recolor apply")
    parser.add_argument("--count-1mp", type=int, default=24)
    parser.add_argument("--count-24mp", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each timing; the best is printed")
    parser.add_argument("--apply-args", default="", help='more options for recolor apply, e.g. "--batch-size 2"')
    parser.add_argument("--stages", action="store_true", help="also time each stage of the current tree")
    parser.add_argument("--engine", default="auto", help="the engine --stages runs (apply's own: --apply-args)")
    parser.add_argument("--floor-child", nargs=3, metavar=("FOLDER", "OUT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child[0], args.floor_child[1], int(args.floor_child[2]))
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    threads = min(4, os.cpu_count() or 1)
    import recolor

    print(f"recolor from {Path(recolor.__file__).parent}; {os.cpu_count()} cores; model {args.model or 'default'} on "
          f"{args.device}{'; apply ' + args.apply_args if args.apply_args else ''}; best of {args.repeat}; {load()} at start")
    print("wall ms per photo (CPU ms per photo, all threads); the load average (1 / 5 min) beside each")
    print(f"{'case':>5} | {'floor':>30} | {'apply marginal':>34} | {'floor/apply':>11} | {'in-process':>17} | "
          f"{'start-up s':>22} | peak RSS MB (apply N / apply 1 / floor)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for case, count in (("1mp", args.count_1mp), ("24mp", args.count_24mp)):
            if count < 2:
                continue
            paths = make_photos(root / case / "all", CASES[case], count)
            (root / case / "one").mkdir()
            shutil.copy(paths[0], root / case / "one" / paths[0].name)
            out = root / case / "out"
            out.mkdir()
            floor_run = best(args.repeat, lambda: run_child(
                [sys.executable, __file__, "--floor-child", str(root / case / "all"), str(out), str(threads)], env))
            floor_ms, floor_cpu = (float(v) for v in floor_run[2].strip().splitlines()[-1].split())
            floor_load = load()

            def apply(folder: str):
                return run_child([sys.executable, "-m", "recolor", "apply", str(root / case / folder), "--out",
                                  str(root / case / f"out-{folder}"), "--overwrite", "--device", args.device,
                                  *(["--model", args.model] if args.model else []), *args.apply_args.split()], env)

            many = best(args.repeat, lambda: apply("all"))
            many_load = load()
            one = best(args.repeat, lambda: apply("one"))
            one_load = load()
            marginal = (many[0] - one[0]) / (count - 1) * 1000
            marginal_cpu = (many[3] - one[3]) / (count - 1) * 1000
            rate = re.search(r"([0-9.]+) images/s", many[2])
            own = f"{1000 / float(rate.group(1)):6.1f} ({floor_ms * float(rate.group(1)) / 1000:4.2f})" if rate else "—"
            print(f"{case:>5} | {floor_ms:6.1f} ({floor_cpu:6.1f}) {floor_load:>15} | {marginal:6.1f} ({marginal_cpu:6.1f}) "
                  f"{many_load:>15} N={count} | {floor_ms / marginal:5.2f} ({floor_cpu / marginal_cpu:4.2f}) | "
                  f"{own:>17} | {one[0] - marginal / 1000:5.2f} ({one[3] - marginal_cpu / 1000:5.2f}) {one_load:>11} | "
                  f"{many[1]:.0f} / {one[1]:.0f} / {floor_run[1]:.0f}", flush=True)
            if args.stages:
                stages(root / case / "all", out, args.model or default_model(), args.device, args.engine)


if __name__ == "__main__":
    main()
