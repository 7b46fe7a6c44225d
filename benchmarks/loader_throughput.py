"""Samples per second: the prepared store (PreparedImages) vs decoding the source JPEGs.

    python benchmarks/loader_throughput.py DATA SOURCE_DIR [--workers 2] [--batch-size 64]

DATA is a folder made by `recolor prepare SOURCE_DIR --out DATA`. Both loaders give the same
uint8 (3, S, S) crops of the train split through a torch DataLoader with shuffling, the same
workers and batch size; the JPEG loader decodes, orients, converts and resizes each file with the
same code `recolor prepare` uses. Files are read once before timing, so both run from the page
cache and the figures compare decoding, not the disk.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from recolor.data.preprocess import load_crop
from recolor.data.store import PreparedImages


class SourceJPEGs(torch.utils.data.Dataset):
    """The source files of the prepared crops, cropped on the fly as `recolor prepare` crops them."""

    def __init__(self, source_dir: str, keys: list[str], size: int) -> None:
        self.paths = [Path(source_dir) / key for key in keys]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(load_crop(self.paths[index], size=self.size).copy()).permute(2, 0, 1)


def samples_per_second(dataset, *, samples: int, workers: int, batch_size: int) -> float:
    """Shuffled batches until `samples` are read; the first batch (worker start-up) is not timed."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=workers, persistent_workers=False)
    seen, started = 0, None
    for batch in loader:
        if started is None:
            started = time.perf_counter()
            continue
        seen += len(batch)
        if seen >= samples:
            break
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("source_dir")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1024, help="samples timed per loader")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (collation); 1 avoids OpenMP "
                             "spinning on a busy machine")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    store = PreparedImages(args.data, "train")
    jpegs = SourceJPEGs(args.source_dir, store.keys(), store.size)  # the very files in the store
    for path in jpegs.paths:  # into the page cache, as the store is after `recolor prepare`
        path.read_bytes()
    print(f"train split: {len(store):,} prepared crops of {store.size} px, {len(jpegs):,} source files; "
          f"DataLoader workers={args.workers}, batch size {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}")
    results = {}
    for name, dataset, samples in (("prepared store", store, args.samples * 4),
                                   ("source JPEGs", jpegs, args.samples)):
        results[name] = samples_per_second(dataset, samples=samples, workers=args.workers,
                                           batch_size=args.batch_size)
        print(f"{name:>15}: {results[name]:9,.0f} samples/s")
    print(f"{'speed-up':>15}: {results['prepared store'] / results['source JPEGs']:9.1f}x")


if __name__ == "__main__":
    main()
