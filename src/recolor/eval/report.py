"""What `recolor eval` measured and how it is written: the rows, the JSON and the tables.

`Report.to_json()` is the documented JSON form (docs/evaluation.md); `Report.from_json` reads it
back, also from reports saved before a column existed (its cells are then unavailable), so a saved
evaluation renders in every format without evaluating again.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# The columns of every format, in order, after the model's name.
METRIC_COLUMNS = ("psnr", "psnr_p10", "ssim", "colorfulness", "delta_cf", "auc", "auc_rebalanced", "spurious",
                  "wrong", "effnet", "vgg", "lpips", "fid", "images_per_s")


@dataclass
class Row:
    """One model's averages over the evaluated images; None where a metric is unavailable."""

    model: str
    psnr: float | None = None  # dB, higher is better
    psnr_p10: float | None = None  # dB, the 10th percentile of the per-image PSNRs: the bad photos
    ssim: float | None = None  # [-1, 1], higher is better
    colorfulness: float | None = None  # Hasler & Süsstrunk, on 0..255 RGB
    delta_cf: float | None = None  # colorfulness(output) - colorfulness(ground truth)
    auc: float | None = None  # % Zhang et al. raw accuracy, area under the ab-error CDF for 0..150
    auc_rebalanced: float | None = None  # % the same with pixels weighted 1 / p(ground-truth ab class), over the set
    spurious: float | None = None  # % of pixels neutral in the ground truth and strongly colored in the output
    wrong: float | None = None  # % of colored ground-truth pixels with a large ab error
    effnet: float | None = None  # eq. (6) on ImageNet EfficientNet-Lite0 features, lower is better
    vgg: float | None = None  # note's eq. (6) on ImageNet VGG-16, lower is better
    lpips: float | None = None  # AlexNet LPIPS, lower is better
    fid: float | None = None  # over the whole set, lower is better
    images_per_s: float | None = None  # colorization only: model + Lab -> RGB, no decoding or metrics


@dataclass
class Report:
    """What `recolor eval` measured; `to_json()` is the documented JSON form."""

    data: str
    size: int
    n: int
    ground_truth_colorfulness: float | None
    rows: list[Row]
    # The thresholds behind auc, spurious, wrong and psnr_p10 (recolor.eval.metrics), so a saved report says them.
    thresholds: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole evaluation, loading included
    samples: str | None = None  # the index.html of the --samples sheets; not part of the JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "size": self.size,
            "n": self.n,
            "ground_truth": {"colorfulness": _finite(self.ground_truth_colorfulness)},
            "rows": [{key: _finite(value) for key, value in asdict(row).items()} for row in self.rows],
            "thresholds": dict(self.thresholds),
            "unavailable": dict(self.unavailable),
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """The report that `to_json` wrote (so a saved JSON renders as a table without re-evaluating)."""
        known = {f.name for f in fields(Row)}
        return cls(data=data["data"], size=data["size"], n=data["n"],
                   ground_truth_colorfulness=data["ground_truth"]["colorfulness"],
                   rows=[Row(**{k: v for k, v in row.items() if k in known}) for row in data["rows"]],
                   thresholds=dict(data.get("thresholds", {})), unavailable=dict(data.get("unavailable", {})),
                   skipped=list(data.get("skipped", [])), seconds=data.get("seconds", 0.0))


def _finite(value: Any) -> Any:
    # JSON has no inf or NaN (PSNR of an exact prediction is +inf): write null instead.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Long headings for markdown (docs have room); short ones keep the terminal table narrow.
_HEADINGS = {
    "model": "Model", "psnr": "PSNR (↑)", "psnr_p10": "PSNR p10 (↑)", "ssim": "SSIM (↑)",
    "colorfulness": "Colorfulness", "delta_cf": "ΔCF", "auc": "AuC % (↑)", "auc_rebalanced": "AuC rebal. % (↑)",
    "spurious": "Spurious % (↓)", "wrong": "Wrong % (↓)", "effnet": "EffNet (↓)", "vgg": "VGG (↓)",
    "lpips": "LPIPS (↓)", "fid": "FID (↓)", "images_per_s": "images/s",
}
_SHORT_HEADINGS = {**_HEADINGS, "psnr": "PSNR↑", "psnr_p10": "p10↑", "ssim": "SSIM↑", "colorfulness": "CF",
                   "auc": "AuC↑", "auc_rebalanced": "AuCr↑", "spurious": "spur↓", "wrong": "wrong↓",
                   "effnet": "eff↓", "vgg": "VGG↓", "lpips": "LPIPS↓", "fid": "FID↓", "images_per_s": "img/s"}
_FORMATS = {
    "psnr": "{:.2f}", "psnr_p10": "{:.2f}", "ssim": "{:.4f}", "colorfulness": "{:.2f}", "delta_cf": "{:+.2f}",
    "auc": "{:.1f}", "auc_rebalanced": "{:.1f}", "spurious": "{:.2f}", "wrong": "{:.1f}", "effnet": "{:.3f}",
    "vgg": "{:.4f}", "lpips": "{:.4f}", "fid": "{:.2f}", "images_per_s": "{:.1f}",
}
MISSING = "—"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return _FORMATS[column].format(value)


def caption(report: Report) -> str:
    """One line under every table: what was measured and the ground truth's colorfulness."""
    truth = _cell("colorfulness", report.ground_truth_colorfulness)
    return (f"{report.n} images of {report.data} at {report.size} x {report.size} px; "
            f"ground-truth colorfulness {truth}")


# The terminal shows two tables of the same rows, so that each fits 80 columns.
_TERMINAL_TABLES = (
    ("recolor eval: fidelity to the photo", ("psnr", "psnr_p10", "ssim", "auc", "auc_rebalanced", "images_per_s")),
    ("color and perception", ("colorfulness", "delta_cf", "spurious", "wrong", "effnet", "vgg", "lpips", "fid")),
)


def to_rich_table(report: Report):
    """Two rich Tables of the same rows (fidelity; color and perception), the caption below them.

    Columns that no row has (metrics unavailable here) are left out; the other formats keep them.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    shown = [c for c in METRIC_COLUMNS if any(getattr(row, c) is not None for row in report.rows)]
    hidden = [c for c in METRIC_COLUMNS if c not in shown]
    note = (" (p10: 10th-percentile PSNR, AuCr: rebalanced AuC, CF: colorfulness, ΔCF: CF - ground truth, "
            "spur/wrong: % spurious/wrong color, eff: EfficientNet-Lite0 distance")
    note += f"; unavailable: {', '.join(hidden)})" if hidden else ")"
    tables = []
    for title, group in _TERMINAL_TABLES:
        columns = [c for c in group if c in shown]
        table = Table(title=title)
        table.add_column(_SHORT_HEADINGS["model"], style="bold")
        for column in columns:
            table.add_column(_SHORT_HEADINGS[column], justify="right", no_wrap=True)
        for row in report.rows:
            table.add_row(row.model, *(_cell(column, getattr(row, column)) for column in columns))
        tables.append(table)
    # The caption spans the console, not the width of the last table.
    return Group(*tables, Text(caption(report) + note))


def to_text(report: Report, *, width: int = 160) -> str:
    """The rich table as plain text (no colors), for `--format table --out FILE`."""
    from rich.console import Console

    console = Console(file=io.StringIO(), record=True, width=width, color_system=None)
    console.print(to_rich_table(report))
    return console.export_text()


def to_markdown(report: Report) -> str:
    """A GitHub markdown table (pastes into docs) followed by the caption in italics."""
    columns = ("model", *METRIC_COLUMNS)
    lines = ["| " + " | ".join(_HEADINGS[c] for c in columns) + " |",
             "|" + "|".join(":---" if c == "model" else "---:" for c in columns) + "|"]
    for row in report.rows:
        cells = [row.model.replace("|", "\\|")] + [_cell(c, getattr(row, c)) for c in METRIC_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"_{caption(report)}._"]
    return "\n".join(lines) + "\n"


def to_csv(report: Report) -> str:
    """One line per row with the JSON's column names; empty cells where a metric is unavailable."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("model", *METRIC_COLUMNS))
    for row in report.rows:
        values = [_finite(getattr(row, c)) for c in METRIC_COLUMNS]
        writer.writerow([row.model, *("" if v is None else repr(float(v)) for v in values)])
    return buffer.getvalue()


def to_json_text(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
