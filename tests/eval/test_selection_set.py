"""scripts/selection_set.py: the checkpoint-selection photos never overlap what `recolor eval --limit` reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from recolor.eval.protocol import open_images

ROOT = Path(__file__).resolve().parents[2]


def test_selection_set_is_disjoint_from_the_reported_subset(tmp_path):
    val = tmp_path / "val"
    for number in range(23):
        folder = val / f"class{number % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), (number * 10, 50, 200 - number * 5)).save(folder / f"p{number:02d}.png")
    out = tmp_path / "selection"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "selection_set.py"), str(val), str(out),
                           "--eval-limit", "7", "--count", "6"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reported = open_images(val, size=32, limit=7)
    reported_names = {reported.name(index) for index in range(len(reported))}
    chosen = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(reported_names) == 7 and len(chosen) == 6
    assert all((out / name).is_symlink() for name in chosen)
    assert not {str(val / name) for name in chosen} & reported_names
    assert {p.rsplit("/", 2)[-2] for p in reported_names} == {"class0", "class1", "class2"}
    # A second run into the same folder refuses rather than mixing two selections.
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "selection_set.py"), str(val), str(out)],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "already holds photos" in again.stderr
