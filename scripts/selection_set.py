"""A model-selection set disjoint from the photos `recolor eval --limit` reports on.

    python scripts/selection_set.py VAL OUT [--eval-limit 1000] [--count 300]

Choosing a checkpoint by its score on the very photos the results table reports would flatter
it. This links (symlinks, nothing is copied) `count` photos of VAL into OUT, spread evenly over
the photos that `recolor eval --data VAL --limit eval-limit` leaves out, keeping sub-folders, so
`recolor eval --data OUT ...` can pick a checkpoint and `recolor eval --data VAL --limit ...`
then reports it on photos the choice never saw.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from recolor.eval.protocol import find_images, spread_indices  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", type=Path, help="the folder of photos `recolor eval` reports on")
    parser.add_argument("out", type=Path, help="where the links go (created; must not hold photos yet)")
    parser.add_argument("--eval-limit", type=int, default=1000, help="the --limit of the reported evaluation")
    parser.add_argument("--count", type=int, default=300, help="photos in the selection set")
    args = parser.parse_args()

    files = find_images(args.val)
    reported = set(spread_indices(args.eval_limit, len(files)))
    rest = [index for index in range(len(files)) if index not in reported]
    chosen = [rest[i] for i in spread_indices(args.count, len(rest))]
    if args.out.exists() and find_images(args.out):
        sys.exit(f"{args.out} already holds photos; choose an empty folder")
    for index in chosen:
        link = args.out / files[index].relative_to(args.val)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(files[index].resolve())
    print(f"{len(chosen)} of the {len(rest)} photos that `--limit {args.eval_limit}` leaves out of {len(files)} "
          f"linked into {args.out}")


if __name__ == "__main__":
    main()
