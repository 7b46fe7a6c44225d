"""The before/after grid of docs/results.md: each photo of a folder, then each built-in model's result.

    python scripts/results_grid.py [PHOTOS=examples] [--models gan wgan progan] [--out docs/images/results-grid.jpg]

Runs `recolor apply` once per model (exactly what users run) into a temporary folder and lays the
input and the outputs side by side, one row per photo, each fitted into a box --cell px high.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, nargs="?", default=ROOT / "examples")
    parser.add_argument("--models", nargs="+", default=["gan", "wgan", "progan"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "results-grid.jpg")
    parser.add_argument("--cell", type=int, default=240, help="cell height in px")
    args = parser.parse_args()

    box = (round(args.cell * 1.5), args.cell)  # every cell fits its photo into the same box
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            subprocess.run([sys.executable, "-m", "recolor", "apply", *map(str, photos), "--model", model,
                            "--out", str(Path(scratch) / model)], check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # works from a checkout too
        columns = ["input", *args.models]
        rows = []
        for photo in photos:
            cells = [Image.open(photo).convert("RGB")]
            cells += [Image.open(Path(scratch) / model / photo.name).convert("RGB") for model in args.models]
            for cell in cells:
                cell.thumbnail(box)
            rows.append(cells)
    label_height, gap = 22, 6
    width = len(columns) * (box[0] + gap) - gap
    height = label_height + len(rows) * (box[1] + gap)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for index, name in enumerate(columns):
        draw.text((index * (box[0] + gap) + 4, 4), name, fill="black")
    for row_index, row in enumerate(rows):
        for index, cell in enumerate(row):
            x = index * (box[0] + gap) + (box[0] - cell.width) // 2
            y = label_height + row_index * (box[1] + gap) + (box[1] - cell.height) // 2
            grid.paste(cell, (x, y))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, quality=88)
    print(f"wrote {args.out} ({width} x {height})")


if __name__ == "__main__":
    main()
