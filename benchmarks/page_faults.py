"""What page-faulted memory costs on the CPU: the figures behind recolor.allocator and
recolor.network.CPU_NETWORK_PIXELS, and behind folding timm's BatchNorms.

    PYTHONPATH=src python benchmarks/page_faults.py [--steps 16] [--calls 8]

Each part runs in a child process of its own (malloc's state is per process), one torch thread,
and prints CPU time and minor page faults:

- train: steps of the EfficientNet-Lite0 generator (width 32, batch 16 at 224 px, bf16 autocast,
  L1 loss, Adam), with glibc's defaults and with `recolor.allocator.keep_freed_memory()`, in
  blocks of 4 steps after 2 warm-up steps;
- network: `Colorizer.ab` on 8 images at 256 px (the built-in default model, bf16) with
  CPU_NETWORK_PIXELS set to 1, 2, 4 and 8 images per call;
- fold: the encoder's forward on 2 images at 256 px, BatchNorms as they are and folded as the
  apply engine folds them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

TRAIN = """
import resource, sys, time, torch
from recolor.nn.encoder_unet import EncoderUNetGenerator
if sys.argv[1] == "keep":
    from recolor.allocator import keep_freed_memory
    keep_freed_memory()
torch.set_num_threads(1)
generator = EncoderUNetGenerator(width=32).to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(generator.parameters(), 1e-4)
lightness = (torch.rand(16, 1, 224, 224) * 2 - 1).contiguous(memory_format=torch.channels_last)
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = generator(lightness).float().abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
step(); step()
for _ in range(int(sys.argv[2]) // 4):
    before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    for _ in range(4):
        step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    rss = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    print(f"  train, {sys.argv[1]:>7}: {(time.process_time() - cpu) / 4:.2f} CPU s per step, "
          f"{(after.ru_minflt - before.ru_minflt) / 4:,.0f} faults per step, resident {rss:,.0f} MB")
"""

NETWORK = """
import resource, sys, time, torch
import recolor.apply.network as network
from recolor.hub.registry import DEFAULT_MODEL, load_model
torch.set_num_threads(1)
per_call = int(sys.argv[1])
network.CPU_NETWORK_PIXELS = per_call * 256 * 256
colorizer = network.Colorizer(load_model(DEFAULT_MODEL)[0], torch.device("cpu"), precision="bf16",
                               keep_generator=False)
lightness = torch.rand(8, 256, 256) * 100
colorizer.ab(lightness); colorizer.ab(lightness)
calls, best, faults = int(sys.argv[2]), float("inf"), []
for _ in range(calls):
    before, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
    colorizer.ab(lightness)
    best = min(best, time.process_time() - cpu)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(f"  network, {per_call} image(s) per call: best {best / 8 * 1000:.1f} CPU ms per image, "
      f"faults per 8 images {min(faults):,}-{max(faults):,}")
"""

FOLD = """
import copy, time, torch
from recolor.apply.network import _fold_batch_norms
from recolor.hub.registry import DEFAULT_MODEL, load_model
torch.set_num_threads(1)
generator = load_model(DEFAULT_MODEL)[0].eval()
folded = copy.deepcopy(generator)
_fold_batch_norms(folded)
rgb = torch.rand(2, 3, 256, 256, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
for name, network in (("as trained", generator), ("folded", folded)):
    encoder = network.encoder.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    with torch.inference_mode():
        encoder(rgb); encoder(rgb)
        best = float("inf")
        for _ in range(8):
            cpu = time.process_time()
            encoder(rgb)
            best = min(best, time.process_time() - cpu)
    count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    print(f"  fold, {name:>10}: encoder forward {best / 2 * 1000:.1f} CPU ms per image, {count} BatchNorms")
"""


def child(code: str, *args: object) -> None:
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    print(result.stdout, end="", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16, help="training steps measured per mode (blocks of 4)")
    parser.add_argument("--calls", type=int, default=8, help="network calls of 8 images measured per setting")
    args = parser.parse_args()
    with open("/proc/loadavg") as loadavg:
        print(f"load {' / '.join(loadavg.read().split()[:2])} at start; one torch thread per child")
    for mode in ("default", "keep"):
        child(TRAIN, mode, args.steps)
    for per_call in (1, 2, 4, 8):
        child(NETWORK, per_call, args.calls)
    child(FOLD)


if __name__ == "__main__":
    main()
