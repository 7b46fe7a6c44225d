"""`recolor eval`: one protocol for every model and the gray baseline, and the tables it prints.

The protocol (DESIGN.md, "Evaluation protocol"):
- each photo becomes the crop `recolor prepare` stores: short side resized to `size` (bicubic,
  antialiased when shrinking), center square kept, 8-bit sRGB; a prepared DATA folder's val split
  is used as stored. The photos prepare would skip are left out here too and listed;
- its Lab is computed (`recolor.color`), the true L goes to the model, and the predicted ab is
  joined with that true L and turned back into sRGB, clipped to the gamut;
- the prediction is compared with the resized ground-truth RGB itself (not with its Lab round
  trip): PSNR and SSIM on RGB in [0, 1] and the colorfulness gap, each per image then averaged;
  the note's VGG distance (eq. 6) and LPIPS per image where their weights load, and FID over the set;
- the baseline `gray` predicts ab = 0 (the true L as a gray photo) and is always the first row.

Photos are decoded once; every model is scored on the same batch before the next one is read, so
the ground truth's Lab and colorfulness are computed once per batch.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import importlib.util
import io
import json
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from recolor import metrics
from recolor.color import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab
from recolor.errors import DataError, Interrupted, RecolorError, UsageError

GRAY = "gray"
METRIC_COLUMNS = ("psnr", "ssim", "colorfulness", "delta_cf", "vgg", "lpips", "fid", "images_per_s")
PERCEPTUAL = ("vgg", "lpips", "fid")
# A download that neither answers nor fails (a black-holed connection) must not hang an evaluation.
DOWNLOAD_TIMEOUT_S = 15.0
METRICS_EXTRA = 'pip install "recolor-cli[metrics]"'


@dataclass
class Row:
    """One model's averages over the evaluated images; None where a metric is unavailable."""

    model: str
    psnr: float | None = None  # dB, higher is better
    ssim: float | None = None  # [-1, 1], higher is better
    colorfulness: float | None = None  # Hasler & Süsstrunk, on 0..255 RGB
    delta_cf: float | None = None  # colorfulness(output) - colorfulness(ground truth)
    vgg: float | None = None  # note's eq. (6), lower is better
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
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole evaluation, loading included

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "size": self.size,
            "n": self.n,
            "ground_truth": {"colorfulness": _finite(self.ground_truth_colorfulness)},
            "rows": [{key: _finite(value) for key, value in asdict(row).items()} for row in self.rows],
            "unavailable": dict(self.unavailable),
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """The report that `to_json` wrote (so a saved JSON renders as a table without re-evaluating)."""
        return cls(data=data["data"], size=data["size"], n=data["n"],
                   ground_truth_colorfulness=data["ground_truth"]["colorfulness"],
                   rows=[Row(**row) for row in data["rows"]], unavailable=dict(data.get("unavailable", {})),
                   skipped=list(data.get("skipped", [])), seconds=data.get("seconds", 0.0))


def _finite(value: Any) -> Any:
    # JSON has no inf or NaN (PSNR of an exact prediction is +inf): write null instead.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------ the images


def find_images(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively) with a suffix recolor reads, sorted by relative path."""
    from recolor.imageio import SUPPORTED_SUFFIXES

    files = [p for p in folder.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


class FolderImages(Dataset):
    """Photos from files: item i is (i, uint8 RGB (3, size, size) or None, why it was left out or None).

    Each photo becomes exactly the crop `recolor prepare` would store (`load_crop`), and the same
    photos are left out: unreadable, short side under size / 2, grayscale or nearly grayscale.
    """

    def __init__(self, files: Sequence[Path], size: int) -> None:
        self.files = list(files)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return str(self.files[index])

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        from recolor.data.preprocess import Skip, load_crop

        try:
            crop = load_crop(self.files[index], size=self.size)
        except Skip as why:
            return index, None, str(why)
        # torch.tensor copies: Pillow's array is read-only.
        return index, torch.tensor(crop).permute(2, 0, 1).contiguous(), None


class PreparedVal(Dataset):
    """The val split of a prepared DATA folder (`recolor prepare`), re-cropped when its size differs."""

    def __init__(self, data_dir: Path, size: int) -> None:
        from recolor.data.store import PreparedImages

        self.images = PreparedImages(data_dir, "val")
        self.data_dir = data_dir
        self.size = size

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return f"{self.data_dir} val #{index}"

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        image = self.images[index]
        if image.shape[-1] != self.size:
            from recolor.data.preprocess import square_crop

            crop = square_crop(image.permute(1, 2, 0).numpy(), self.size)
            image = torch.tensor(crop).permute(2, 0, 1).contiguous()
        return index, image, None


def spread_indices(count: int, total: int) -> list[int]:
    """The positions `--limit count` takes out of `total` photos: every (total / count)-th one.

    Photo folders are usually sorted by class or date, so the first N images would be a biased
    sample; evenly spread positions span the whole set and are still deterministic.
    """
    return [index * total // count for index in range(min(count, total))]


class _Subset(Dataset):
    """`count` images of `dataset`, at `spread_indices`."""

    def __init__(self, dataset: Dataset, count: int) -> None:
        self.dataset = dataset
        self.indices = spread_indices(count, len(dataset))

    def __len__(self) -> int:
        return len(self.indices)

    def name(self, index: int) -> str:
        return self.dataset.name(self.indices[index])

    def __getitem__(self, index: int):
        position, image, reason = self.dataset[self.indices[index]]
        return index, image, reason


def open_images(data: Path, *, size: int, limit: int | None = None) -> Dataset:
    """The photos to evaluate: a prepared DATA folder's val split, else every image file under `data`."""
    if not data.exists():
        raise UsageError(f"{data} does not exist", "point --data at a folder of color photos or a prepared DATA folder")
    if not data.is_dir():
        raise UsageError(f"{data} is not a folder", "point --data at a folder of color photos or a prepared DATA folder")
    if (data / "prepare.json").is_file():
        dataset: Dataset = PreparedVal(data, size)
        if len(dataset) == 0:
            raise DataError(f"{data} has no val images", "prepare it again with a --val-fraction above 0")
    else:
        files = find_images(data)
        if not files:
            raise DataError(f"no image files under {data}", "recolor eval reads jpg, png, tiff, webp, bmp and gif photos")
        dataset = FolderImages(files, size)
    if limit is not None and limit < len(dataset):
        dataset = _Subset(dataset, limit)
    return dataset


def collate_photos(items: list[tuple[int, torch.Tensor | None, str | None]]):
    # Left-out photos travel as (index, reason) beside the batch of the good ones.
    images = [image for _, image, _ in items if image is not None]
    failures = [(index, reason) for index, image, reason in items if image is None]
    return (torch.stack(images) if images else None), failures, len(items)


def _worker_init(_: int) -> None:
    # Workers only decode and resize; one thread each leaves the cores to the main process.
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------- the perceptual metrics


@contextlib.contextmanager
def _download_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    # torch.hub's urlopen has no timeout of its own; the socket default bounds it.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class _VGGDistance:
    """The note's eq. (6) perceptual distance with ImageNet VGG-16 (recolor.nn.vgg), per image."""

    def __init__(self, device: torch.device) -> None:
        from recolor.nn.vgg import VGGFeatures, perceptual_distance

        self._distance = perceptual_distance
        with _download_timeout():
            self._features = VGGFeatures(pretrained=True).to(device).eval()

    def __call__(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return self._distance(pred, true, self._features)


class _LPIPS:
    """LPIPS with AlexNet (torchmetrics, its bundled linear layers + torchvision's AlexNet weights).

    Returns the batch mean; the caller weights it by the batch size, so the result is a per-image mean.
    """

    def __init__(self, device: torch.device) -> None:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        with _download_timeout():
            self._metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(device)

    def __call__(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        value = self._metric(pred, true)
        self._metric.reset()
        return value.expand(pred.shape[0])


def _load_perceptual(name: str, device: torch.device) -> tuple[Any, str | None]:
    """(metric, None) when its weights load, else (None, a one-line reason). Tries once, no retries."""
    needs_torchmetrics = name in ("lpips", "fid")
    if needs_torchmetrics and importlib.util.find_spec("torchmetrics") is None:
        return None, f"torchmetrics is not installed ({METRICS_EXTRA})"
    try:
        if name == "vgg":
            return _VGGDistance(device), None
        if name == "lpips":
            return _LPIPS(device), None
        from torchmetrics.image.fid import FrechetInceptionDistance

        with _download_timeout():
            return FrechetInceptionDistance(feature=2048, normalize=True).to(device), None
    except RecolorError as error:  # recolor.nn.vgg: NetworkUnavailableError
        # Only the cause: its fix speaks of training options that `recolor eval` does not have.
        return None, error.cause
    except ImportError as error:  # torchmetrics' FID without torch-fidelity
        return None, f"{error.msg.splitlines()[0] if error.msg else error} ({METRICS_EXTRA})"
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a damaged download a RuntimeError
        what = {"vgg": "VGG-16", "lpips": "AlexNet (torchvision)", "fid": "Inception-v3 (torch-fidelity)"}[name]
        reason = str(getattr(error, "reason", error)).splitlines()[0]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        return None, (f"the {what} weights could not be downloaded ({reason}); run once on a machine with "
                      f"internet, or copy the file into {cache}")


# ----------------------------------------------------------------------------------- the models


@dataclass
class _Model:
    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]  # L in [-1, 1] (N, 1, H, W) -> ab in [-1, 1] (N, 2, H, W)


def _gray(l_norm: torch.Tensor) -> torch.Tensor:
    return l_norm.new_zeros(l_norm.shape[0], 2, *l_norm.shape[2:])


def _load_model(spec: str, device: torch.device):
    from recolor.models import load_model

    return load_model(spec, device=device)


def _builtin_names() -> list[str]:
    from recolor.models import BUILTIN_MODELS

    return list(BUILTIN_MODELS)


def load_models(specs: Sequence[str], *, all_builtin: bool, device: torch.device, size: int,
                unavailable: dict[str, str]) -> list[_Model]:
    """The models to score after `gray`, resolved as `recolor apply` resolves --model.

    A model named on the command line that cannot load is an error; a built-in added by --all that
    cannot load (weights neither shipped nor downloadable) is recorded in `unavailable` and left out.
    """
    wanted = [(spec, True) for spec in dict.fromkeys(specs)]
    if all_builtin:
        wanted += [(name, False) for name in _builtin_names() if name not in specs]
    models = [_Model(GRAY, _gray)]
    for spec, explicit in wanted:
        if spec == GRAY:
            raise UsageError("'gray' is the baseline row, always present", "leave it out of the MODEL list")
        try:
            generator, _ = _load_model(spec, device)
        except RecolorError as error:
            if explicit:
                raise
            unavailable[spec] = error.cause  # its fix speaks of --model, which eval spells MODEL
            continue
        stride = getattr(generator, "stride", 1)
        if size % stride:
            raise UsageError(f"model {spec} needs an input size that is a multiple of {stride}, not {size}",
                             f"use --size {max(stride, size // stride * stride)}")
        models.append(_Model(spec, generator))
    return models


# -------------------------------------------------------------------------------------- the run


@dataclass
class _Sums:
    images: int = 0
    seconds: float = 0.0
    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, per_image: torch.Tensor) -> None:
        self.values[name] = self.values.get(name, 0.0) + per_image.double().sum().item()

    def mean(self, name: str) -> float | None:
        if name not in self.values or self.images == 0:
            return None
        return self.values[name] / self.images


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    data: str | Path,
    models: Sequence[str] = (),
    *,
    all_builtin: bool = False,
    size: int = 256,
    limit: int | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    workers: int | None = None,
    perceptual: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Report:
    """Score the gray baseline and `models` on the photos in `data` at size x size.

    `workers`: processes decoding photos; None picks 0 on a CPU (the metrics already use every
    core, and extra decoders only compete with them) and up to 4 beside a GPU.
    `on_start(total)` is called once the photos are listed, `on_batch(count)` after each batch
    (for a progress bar). Images that cannot be read are left out and listed in `Report.skipped`.
    """
    from recolor.devices import resolve_device

    started = time.perf_counter()
    if size < 32:
        raise UsageError(f"--size {size} is too small", "use --size 32 or more (256 is the protocol)")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1")
    device = device if isinstance(device, torch.device) else resolve_device(device)
    data = Path(data)
    dataset = open_images(data, size=size, limit=limit)
    unavailable: dict[str, str] = {}
    scored = load_models(models, all_builtin=all_builtin, device=device, size=size, unavailable=unavailable)

    pair_metrics: dict[str, Any] = {}
    fid_template = None
    for name in PERCEPTUAL:
        if not perceptual:
            unavailable[name] = "not computed (--no-perceptual)"
            continue
        metric, reason = _load_perceptual(name, device)
        if metric is None:
            unavailable[name] = reason or "unavailable"
        elif name == "fid":
            fid_template = metric
        else:
            pair_metrics[name] = metric
    # FID accumulates statistics over the whole set: one accumulator per model.
    fids = {model.name: copy.deepcopy(fid_template) for model in scored} if fid_template is not None else {}

    if workers is None:
        workers = 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_photos,
                        worker_init_fn=_worker_init if workers else None, persistent_workers=False)
    if on_start:
        on_start(len(dataset))
    sums = {model.name: _Sums() for model in scored}
    truth = _Sums()
    skipped: list[dict[str, str]] = []
    finished = 0  # photos of the batches scored so far
    try:
        with torch.inference_mode():
            for batch, failures, count in loader:
                for index, reason in failures:
                    skipped.append({"file": dataset.name(index), "reason": reason})
                if batch is not None:
                    # uint8 from the loader (a quarter of the bytes between processes), [0, 1] here.
                    rgb = batch.to(device, non_blocking=True).float() / 255
                    lab = rgb_to_lab(rgb)
                    lightness = lab[:, :1]
                    l_norm = normalize_l(lightness)
                    truth.images += rgb.shape[0]
                    truth.add("colorfulness", metrics.colorfulness(rgb))
                    for model in scored:
                        _sync(device)
                        tick = time.perf_counter()
                        ab = denormalize_ab(model.predict(l_norm).float())
                        pred = lab_to_rgb(torch.cat((lightness, ab), dim=1))
                        _sync(device)
                        total = sums[model.name]
                        total.seconds += time.perf_counter() - tick
                        total.images += rgb.shape[0]
                        total.add("psnr", metrics.psnr(pred, rgb))
                        total.add("ssim", metrics.ssim(pred, rgb))
                        cf = metrics.colorfulness(pred)
                        total.add("colorfulness", cf)
                        for name, metric in pair_metrics.items():
                            total.add(name, metric(pred, rgb))
                        if model.name in fids:
                            fids[model.name].update(rgb, real=True)
                            fids[model.name].update(pred, real=False)
                finished += count
                if on_batch:
                    on_batch(count)
    except KeyboardInterrupt as interrupt:
        # Means over part of the set would not compare with a whole run's: no table at all.
        raise Interrupted(f"stopped after {finished:,} of {len(dataset):,} photos; nothing printed or written",
                          "run it again (eval keeps no partial scores); --limit N scores N photos spread "
                          "over the set, in less time") from interrupt

    n = truth.images
    if n == 0:
        first = skipped[0]["reason"] if skipped else "no images"
        raise DataError(f"none of the {len(dataset)} images under {data} could be evaluated (first: {first})",
                        "point --data at color photos")
    gt_cf = truth.mean("colorfulness")
    rows = []
    for model in scored:
        total = sums[model.name]
        row = Row(model=model.name, psnr=total.mean("psnr"), ssim=total.mean("ssim"),
                  colorfulness=total.mean("colorfulness"),
                  images_per_s=total.images / total.seconds if total.seconds > 0 else None)
        row.delta_cf = row.colorfulness - gt_cf if row.colorfulness is not None and gt_cf is not None else None
        row.vgg = total.mean("vgg")
        row.lpips = total.mean("lpips")
        if model.name in fids:
            row.fid = _compute_fid(fids[model.name], unavailable)
        rows.append(row)
    return Report(data=str(data), size=size, n=n, ground_truth_colorfulness=gt_cf, rows=rows,
                  unavailable=unavailable, skipped=skipped, seconds=time.perf_counter() - started)


def _compute_fid(metric, unavailable: dict[str, str]) -> float | None:
    try:
        return float(metric.compute())
    except RuntimeError as error:  # torchmetrics: fewer than 2 images on a side
        unavailable.setdefault("fid", str(error).splitlines()[0])
        return None


# ---------------------------------------------------------------------------------- the formats

# Long headings for markdown (docs have room); short ones keep the terminal table within 80 columns.
_HEADINGS = {
    "model": "Model", "psnr": "PSNR (↑)", "ssim": "SSIM (↑)", "colorfulness": "Colorfulness",
    "delta_cf": "ΔCF", "vgg": "VGG (↓)", "lpips": "LPIPS (↓)", "fid": "FID (↓)", "images_per_s": "images/s",
}
_SHORT_HEADINGS = {**_HEADINGS, "psnr": "PSNR↑", "ssim": "SSIM↑", "colorfulness": "CF", "vgg": "VGG↓",
                   "lpips": "LPIPS↓", "fid": "FID↓", "images_per_s": "img/s"}
_FORMATS = {
    "psnr": "{:.2f}", "ssim": "{:.4f}", "colorfulness": "{:.2f}", "delta_cf": "{:+.2f}", "vgg": "{:.4f}",
    "lpips": "{:.4f}", "fid": "{:.2f}", "images_per_s": "{:.1f}",
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


def to_rich_table(report: Report):
    """A rich Table shaped like the note's Table 3 (model, PSNR, VGG, ...) with the caption below."""
    from rich.table import Table

    table = Table(title="recolor eval", caption=caption(report) + " (CF: colorfulness, ΔCF: CF - ground truth)",
                  caption_justify="left")
    table.add_column(_SHORT_HEADINGS["model"], style="bold")
    for column in METRIC_COLUMNS:
        table.add_column(_SHORT_HEADINGS[column], justify="right", no_wrap=True)
    for row in report.rows:
        table.add_row(row.model, *(_cell(column, getattr(row, column)) for column in METRIC_COLUMNS))
    return table


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
