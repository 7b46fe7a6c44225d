"""The engines that can run a generator on the CPU, side by side: speed, start-up and colors.

    PYTHONPATH=src python benchmarks/engines.py [--model progan] [--threads 1 2] [--calls 15]
        [--photos DIR] [--count 40]

Speed: each engine in a process of its own, on a batch of 4 x 1 x 160 x 256 (the render shape of a
3:2 photo) of real photos' L, the median ms per image of `--calls` calls after two warm-up calls,
at each thread count (apply gives the network the cores its I/O threads leave: 1 on 2 cores).
Start-up: that process's import + load + first call, from its start (the interpreter's own start
not counted). Engines:

- torch fp32 and torch bf16: `recolor.engine.torch_device.TorchEngine` (BatchNorms folded,
  channels_last; bf16 where the CPU has it natively), today's CPU path before OpenVINO;
- OpenVINO f32 and bf16: the shipped export (OpenVINO IR, fp16 weights), `recolor.engine.openvino_cpu`;
- OpenVINO bf16 on ONNX (if onnx is installed): the same engine reading an fp32 ONNX export instead
  of the IR, to compare the two formats (their sizes are printed);
- ONNX Runtime fp32 (if onnxruntime and onnx are installed): the same generator exported to ONNX.

Each speed child also times its first call at another render shape (the batch turned upright,
4 x 1 x 256 x 160): what a new shape costs once.

Colors: every engine against torch fp32 on `--count` photos (`--photos DIR`, else scikit-image's
color samples and examples/), each made gray, at render size 256: mean and max |Δab| (ab in about
-110..110), and the RGB PSNR of the full-size result (the join) against torch fp32's, the lowest
over the photos.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("torch-fp32", "torch-bf16", "openvino-f32", "openvino-bf16", "openvino-bf16-onnx", "onnxruntime-fp32")


def load() -> str:
    one, five = os.getloadavg()[:2]
    return f"load {one:.2f}/{five:.2f}"


def photos(folder: str | None, count: int) -> list:
    """(name, uint8 gray (H, W)) of up to `count` photos."""
    import numpy as np
    from PIL import Image

    found = []
    if folder:
        for path in sorted(Path(folder).rglob("*"))[: count * 3]:
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                with Image.open(path) as image:
                    found.append((path.name, np.asarray(image.convert("L"))))
            if len(found) == count:
                break
        return found
    import skimage.data

    for name in ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field", "immunohistochemistry",
                 "colorwheel", "cat", "logo", "motorcycle_left", "lily"):
        try:
            image = getattr(skimage.data, name)()
        except Exception:  # some samples need pooch and the network: skip them
            continue
        if image.ndim == 3:
            found.append((name, np.asarray(Image.fromarray(image[..., :3]).convert("L"))))
    for path in sorted((ROOT / "examples").glob("*.jpg")):
        with Image.open(path) as image:
            found.append((path.name, np.asarray(image.convert("L"))))
    return found[:count]


def open_runner(engine: str, model: str, threads: int):
    """An object with .ab(L (B, h, w)) -> ab (B, 2, h, w), numpy, for `engine`."""
    if engine.startswith("torch"):
        import torch

        from recolor.engine.torch_device import TorchEngine
        from recolor.hub.registry import load_model

        torch.set_num_threads(threads)
        generator, _ = load_model(model)
        return TorchEngine(generator, torch.device("cpu"), precision=engine.split("-")[1], keep_generator=False)
    if engine == "openvino-bf16-onnx":
        from recolor.engine.openvino_cpu import OpenVINOEngine

        runner = OpenVINOEngine(onnx_export(model), precision="bf16")
        runner._threads = threads
        return runner
    if engine.startswith("openvino"):
        from recolor.engine.choice import generator_stride
        from recolor.engine.export import find_export
        from recolor.engine.openvino_cpu import OpenVINOEngine
        from recolor.hub.registry import resolve_model

        folder = resolve_model(model)
        runner = OpenVINOEngine(find_export(folder).graph, precision={"f32": "fp32", "bf16": "bf16"}[engine.split("-")[1]],
                                stride=generator_stride(folder))
        runner._threads = threads  # the count every call of this process uses (what `with runner.threads()` sets)
        return runner
    return OnnxRuntimeRunner(model, threads)


def onnx_export(model: str) -> Path:
    """`model`'s generator exported to ONNX (fp32, opset 17, free batch, height and width) in a
    temporary folder, by torch's exporter (which needs the onnx package)."""
    import tempfile

    import torch

    from recolor.hub.registry import load_model

    generator, _ = load_model(model)
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(generator, (torch.zeros(1, 1, 160, 256),), str(path), dynamo=False, opset_version=17,
                      input_names=["lightness"], output_names=["ab"],
                      dynamic_axes={"lightness": {0: "n", 2: "h", 3: "w"}, "ab": {0: "n", 2: "h", 3: "w"}})
    return path


class OnnxRuntimeRunner:
    """The generator exported to ONNX by torch and run by ONNX Runtime's CPU provider, fp32."""

    def __init__(self, model: str, threads: int) -> None:
        import onnxruntime

        path = onnx_export(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def ab(self, lightness):
        import numpy as np

        l_norm = (lightness[:, None] / 50 - 1).astype(np.float32)
        return self.session.run(None, {"lightness": l_norm})[0] * np.float32(110)


def speed_child(engine: str, model: str, threads: int, calls: int, batch_file: str) -> None:
    """In its own process: start-up and median ms per image of `engine` on the L in `batch_file`
    (made by the parent, so reading photos is not start-up); prints one JSON line."""
    start = time.perf_counter()
    import numpy as np

    runner = open_runner(engine, model, threads)
    lightness = np.load(batch_file)
    runner.ab(lightness)
    startup = time.perf_counter() - start
    runner.ab(lightness)
    times = []
    for _ in range(calls):
        tick = time.perf_counter()
        runner.ab(lightness)
        times.append((time.perf_counter() - tick) / len(lightness) * 1000)
    upright = np.ascontiguousarray(lightness.transpose(0, 2, 1))
    tick = time.perf_counter()
    runner.ab(upright)
    new_shape = (time.perf_counter() - tick) * 1000 - statistics.median(times) * len(upright)
    print(json.dumps({"ms": statistics.median(times), "startup": startup, "torch": "torch" in sys.modules,
                      "new_shape_ms": new_shape}))


def speed_batch(path: Path) -> None:
    """The L of 4 photos at the render shape 160 x 256, saved for the speed children."""
    import numpy as np

    from recolor.apply.join import network_lightness
    from recolor.io.photo import Photo

    batch = []
    for _, gray in photos(None, 4):
        photo = Photo(path=None, rgb=np.repeat(gray[..., None], 3, axis=2), alpha=None, format="PNG", mode="L",
                      bit_depth=8, icc_profile=None, exif=None, dpi=None, is_grayscale=True)
        batch.append(network_lightness(photo, (160, 256)))
    np.save(path, np.stack(batch))


def colors(model: str, folder: str | None, count: int, engines: list[str]) -> None:
    import numpy as np

    from recolor.apply.join import join, network_lightness
    from recolor.apply.pipeline import render_shape
    from recolor.io.photo import Photo

    reference = open_runner("torch-fp32", model, os.cpu_count() or 1)
    runners = {engine: open_runner(engine, model, os.cpu_count() or 1) for engine in engines if engine != "torch-fp32"}
    figures = {engine: {"mean": [], "max": [], "psnr": [], "name": []} for engine in runners}
    chosen = photos(folder, count)
    for name, gray in chosen:
        photo = Photo(path=None, rgb=np.repeat(gray[..., None], 3, axis=2), alpha=None, format="PNG", mode="L",
                      bit_depth=8, icc_profile=None, exif=None, dpi=None, is_grayscale=True)
        small = network_lightness(photo, render_shape(*photo.size, 256))
        ab32 = reference.ab(small[None])[0]
        rgb32 = join(photo, ab32, small).astype(np.float64)
        for engine, runner in runners.items():
            ab = runner.ab(small[None])[0]
            error = np.abs(ab - ab32)
            mse = np.mean((join(photo, ab, small).astype(np.float64) - rgb32) ** 2)
            figures[engine]["mean"].append(float(error.mean()))
            figures[engine]["max"].append(float(error.max()))
            figures[engine]["psnr"].append(10 * np.log10(255**2 / mse) if mse > 0 else float("inf"))
            figures[engine]["name"].append(name)
    print(f"\ncolors against torch fp32, {len(chosen)} photos made gray ({folder or 'scikit-image + examples/'}), "
          "render size 256:")
    print(f"{'engine':>17} | mean |Δab| (worst photo) | max |Δab| | RGB PSNR mean / lowest dB | worst photo; "
          "photos over 1.0 mean |Δab| or under 40 dB")
    for engine, values in figures.items():
        finite = [v for v in values["psnr"] if v != float("inf")] or [float("inf")]
        worst = values["name"][int(np.argmin(values["psnr"]))]
        over = sum(m > 1.0 or p < 40 for m, p in zip(values["mean"], values["psnr"]))
        print(f"{engine:>17} | {statistics.mean(values['mean']):9.3f} ({max(values['mean']):6.3f}) | "
              f"{max(values['max']):9.2f} | {statistics.mean(finite):6.1f} / {min(values['psnr']):5.1f} | "
              f"{worst}; {over} of {len(values['psnr'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="progan")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--photos", default=None, help="a folder of photos for the color check")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--no-colors", action="store_true")
    parser.add_argument("--speed-child", nargs=4, metavar=("ENGINE", "THREADS", "CALLS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_child:
        speed_child(args.speed_child[0], args.model, int(args.speed_child[1]), int(args.speed_child[2]),
                    args.speed_child[3])
        return
    import importlib.util
    import tempfile

    batch_file = Path(tempfile.mkdtemp()) / "lightness.npy"
    speed_batch(batch_file)

    has_onnx = importlib.util.find_spec("onnx") is not None
    engines = [e for e in args.engines if (e != "onnxruntime-fp32" or (importlib.util.find_spec("onnxruntime") and has_onnx))
               and (e != "openvino-bf16-onnx" or has_onnx)]
    from recolor.hub.exports import EXPORT_FILES
    from recolor.hub.registry import resolve_model

    shipped = sum((resolve_model(args.model) / name).stat().st_size for name in EXPORT_FILES)
    sizes = f"export sizes: OpenVINO IR (fp16 weights) {shipped / 1e6:.1f} MB"
    if has_onnx and "openvino-bf16-onnx" in engines:
        sizes += f", ONNX fp32 {onnx_export(args.model).stat().st_size / 1e6:.1f} MB"
    print(sizes)
    print(f"model {args.model}; {os.cpu_count()} cores; batch 4 x 1 x 160 x 256; median of {args.calls} calls; {load()}")
    print(f"{'engine':>17} | " + " | ".join(f"{t} thread(s) ms/image" for t in args.threads)
          + " | start-up s (import + load + first call) | torch imported | a new shape's first call, ms more")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    for engine in engines:
        cells, startup, torch_loaded, new_shape = [], None, None, None
        for threads in args.threads:
            done = subprocess.run([sys.executable, __file__, "--model", args.model, "--speed-child", engine,
                                   str(threads), str(args.calls), str(batch_file)], capture_output=True, text=True, env=env)
            if done.returncode:
                cells.append("failed: " + done.stderr.strip().splitlines()[-1][:60])
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            cells.append(f"{result['ms']:7.1f} ({load()})")
            startup = result["startup"] if startup is None else min(startup, result["startup"])
            torch_loaded = result["torch"]
            new_shape = result["new_shape_ms"] if new_shape is None else min(new_shape, result["new_shape_ms"])
        print(f"{engine:>17} | " + " | ".join(cells) + f" | {startup if startup is not None else float('nan'):5.2f} | "
              f"{torch_loaded} | {new_shape if new_shape is not None else float('nan'):6.0f}", flush=True)
    if not args.no_colors:
        colors(args.model, args.photos, args.count, engines)


if __name__ == "__main__":
    main()
