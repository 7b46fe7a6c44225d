"""`recolor eval --samples DIR`: each model's worst photos, where a person sees the failures at a glance.

Per model one PNG sheet: on the left its N photos of lowest PSNR, on the right its N photos with the
most spurious color (neutral ground truth painted strongly, `recolor.eval.metrics.spurious`), each as
gray input | model | ground truth at the evaluated size, with the photo's name and figures above
it. An `index.html` beside the sheets (apply's contact page, `recolor.apply.report`) links them all.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from recolor.errors import ImageWriteError

if TYPE_CHECKING:
    from recolor.eval.report import Report

CELLS = ("gray input", "model", "ground truth")
_GAP = 6  # px between cells
_SECTION_GAP = 24  # px between the two lists
_LABEL = 18  # px of text above each photo's row
_HEADER = 48  # px of title above the lists


@dataclass
class Photo:
    name: str
    psnr: float
    spurious: float
    cells: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # gray, model, truth: RGB (3, H, W) in [0, 1]


@dataclass
class Section:
    title: str
    photos: list[Photo]
    empty: str  # said instead of the photos when there are none


@dataclass
class ModelRun:
    """What eval knows of one model: per-image PSNR and spurious color, in dataset-position order."""

    name: str
    positions: Sequence[int]
    psnr: Sequence[float]
    spurious: Sequence[float]
    # Dataset positions -> their (gray input, output, ground truth) RGB (3, H, W) in [0, 1].
    render: Callable[[list[int]], dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]


def pick(values: Sequence[float], positions: Sequence[int], *, count: int, highest: bool,
         above: float | None = None) -> list[tuple[int, float]]:
    """The `count` (position, value) pairs with the lowest values (or highest), ties in position order.

    `above`: only values strictly above it qualify (a photo with no spurious color is no failure).
    NaN values never qualify.
    """
    pairs = [(position, value) for position, value in zip(positions, values)
             if not math.isnan(value) and (above is None or value > above)]
    pairs.sort(key=lambda pair: (-pair[1] if highest else pair[1], pair[0]))
    return pairs[:count]


def slug(name: str) -> str:
    """A file-name-safe form of a model name: `runs/my run` -> `runs-my-run`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return cleaned[-60:] or "model"


def _to_image(rgb: torch.Tensor):
    from PIL import Image

    array = (rgb.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _fit(draw, text: str, font, width: int) -> str:
    # Long paths lose their beginning: the file name at the end is what tells photos apart.
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def render_sheet(*, model: str, sections: Sequence[Section], size: int, subtitle: str = ""):
    """The sheet as a PIL image: the sections side by side, one row of three cells per photo."""
    from PIL import Image, ImageDraw

    block = 3 * size + 2 * _GAP
    rows = max([len(section.photos) for section in sections] + [1])
    width = len(sections) * block + (len(sections) - 1) * _SECTION_GAP
    height = _HEADER + _LABEL + rows * (_LABEL + size + _GAP)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    big, small = _font(16), _font(12)
    draw.text((0, 2), _fit(draw, f"{model}: {subtitle}", big, width), fill="black", font=big)
    draw.text((0, 24), _fit(draw, " | ".join(CELLS) + " in each row", small, width), fill="#444", font=small)
    for index, section in enumerate(sections):
        x0 = index * (block + _SECTION_GAP)
        draw.text((x0, _HEADER), section.title, fill="black", font=big)
        if not section.photos:
            draw.text((x0, _HEADER + _LABEL + 4), section.empty, fill="#444", font=small)
        for row, photo in enumerate(section.photos):
            y = _HEADER + _LABEL + row * (_LABEL + size + _GAP)
            figures = f"{photo.psnr:.2f} dB, spurious {photo.spurious:.2f} %  "
            room = block - draw.textlength(figures, font=small)
            name = _fit(draw, photo.name, small, int(room)) if room > 40 else ""
            draw.text((x0, y + 3), figures + name, fill="#222", font=small)
            for column, cell in enumerate(photo.cells):
                sheet.paste(_to_image(cell), (x0 + column * (size + _GAP), y + _LABEL))
    return sheet


def write_sheet(path: Path, *, model: str, sections: Sequence[Section], report: Report) -> tuple[Path, str, list[Section]]:
    """Write one model's sheet as PNG, atomically; returns (path, model, sections) for the index."""
    from recolor.io.atomic import atomic_write

    subtitle = f"{report.n} photos of {report.data} at {report.size} px"
    sheet = render_sheet(model=model, sections=sections, size=report.size, subtitle=subtitle)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: sheet.save(file, format="PNG"))
    except OSError as error:
        raise ImageWriteError(f"{path}: the sheet cannot be written ({error.strerror or error})",
                              "choose a --samples folder you can write to") from None
    return path, model, list(sections)


def write_samples(folder: Path, runs: Sequence[ModelRun], *, worst: int, report: Report,
                  name_of: Callable[[int], str]) -> Path:
    """Each run's sheet (`NN-name.png`) of its `worst` photos by PSNR and by spurious color, and the index."""
    sheets = []
    for number, run in enumerate(runs):
        chosen = {
            "psnr": pick(run.psnr, run.positions, count=worst, highest=False),
            "spurious": pick(run.spurious, run.positions, count=worst, highest=True, above=0.0),
        }
        cells = run.render(sorted({position for pairs in chosen.values() for position, _ in pairs}))
        figures = {position: (psnr, spurious) for position, psnr, spurious in zip(run.positions, run.psnr, run.spurious)}

        def photos(key: str) -> list[Photo]:
            return [Photo(name=name_of(position), psnr=figures[position][0], spurious=figures[position][1],
                          cells=cells[position]) for position, _ in chosen[key]]

        sections = [
            Section(title=f"worst {len(chosen['psnr'])} by PSNR", photos=photos("psnr"), empty="no photos"),
            Section(title=f"worst {len(chosen['spurious'])} by spurious color", photos=photos("spurious"),
                    empty="no photo has spurious color (a neutral ground truth colored strongly)"),
        ]
        path = folder / f"{number + 1:02d}-{slug(run.name)}.png"
        sheets.append(write_sheet(path, model=run.name, sections=sections, report=report))
    return write_index(folder, sheets, report=report)


def write_index(folder: Path, sheets: Sequence[tuple[Path, str, list[Section]]], *, report: Report) -> Path:
    """Write `folder/index.html`: each model's sheet, with its worst photos named below it."""
    from recolor.io.atomic import atomic_write
    from recolor.apply.report import contact_page, figure, made_at

    figures = []
    for path, model, sections in sheets:
        lists = []
        for section in sections:
            items = "".join(f"<li>{html.escape(photo.name)}: {photo.psnr:.2f} dB, spurious {photo.spurious:.2f} %</li>"
                            for photo in section.photos) or f"<li>{html.escape(section.empty)}</li>"
            lists.append(f"<b>{html.escape(section.title)}</b><ol>{items}</ol>")
        figures.append(figure(href=path, image=path, root=folder, alt=model,
                              caption_html=f"<b>{html.escape(model)}</b><br>" + "".join(lists)))
    thresholds = report.thresholds
    intro = (f"Per model, its worst photos among the {report.n} of {html.escape(report.data)} at {report.size} px: "
             "on the left by PSNR (lowest first), on the right by spurious color (the share of pixels that are "
             f"neutral in the ground truth, chroma under {thresholds.get('neutral_chroma', '?')}, and strongly "
             f"colored in the output, chroma over {thresholds.get('spurious_chroma', '?')}). Each row: "
             f"{' | '.join(CELLS)}. Made {made_at()}; click a sheet for its full size.")
    page = contact_page(title="recolor eval: the worst photos", intro_html=intro, figures=figures)
    path = folder / "index.html"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: file.write(page.encode("utf-8")))
    except OSError as error:
        raise ImageWriteError(f"{path} cannot be written ({error.strerror or error})",
                              "choose a --samples folder you can write to") from None
    return path
