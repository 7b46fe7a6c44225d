"""`recolor eval`: one protocol for every model and the gray baseline.

The protocol (DESIGN.md, "Evaluation protocol"; docs/evaluation.md has every figure's definition):
- each photo becomes the crop `recolor prepare` stores: short side resized to `size` (bicubic,
  antialiased when shrinking), center square kept, 8-bit sRGB; a prepared DATA folder's val split
  is used as stored. The photos prepare would skip are left out here too and listed;
- its Lab is computed (`recolor.color`), the true L goes to the model, and the predicted ab is
  joined with that true L and turned back into sRGB, clipped to the gamut;
- the prediction is compared with the resized ground-truth RGB itself (not with its Lab round
  trip): PSNR, SSIM, colorfulness, the ab-error figures (AuC, spurious and wrong color, on the Lab
  of the output the user would see) and the perceptual distances, each per image then averaged;
  the rebalanced AuC and FID are over the whole set, psnr_p10 a percentile of the per-image PSNRs;
- the baseline `gray` predicts ab = 0 (the true L as a gray photo) and is always the first row.

Photos are decoded once; every model is scored on the same batch before the next one is read, so
the ground truth's Lab, colorfulness and perceptual features are computed once per batch. The
tables and the JSON are `recolor.eval.report`'s; the --samples sheets `recolor.eval.samples`'.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from recolor.eval import metrics
from recolor.color import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab
from recolor.errors import DataError, Interrupted, RecolorError, UsageError
from recolor.eval.models import ScoredModel, load_models
from recolor.eval.report import METRIC_COLUMNS, Report, Row  # noqa: F401  (evaluate's results, re-exported)

PERCEPTUAL = ("effnet", "vgg", "lpips", "fid")
# A download that neither answers nor fails (a black-holed connection) must not hang an evaluation.
DOWNLOAD_TIMEOUT_S = 15.0
METRICS_EXTRA = 'pip install "recolor-cli[metrics]"'
PSNR_PERCENTILE = 10
# What the JSON states beside the figures (recolor.eval.metrics holds the numbers and why they are these).
THRESHOLDS = {
    "auc_max_error": metrics.AUC_MAX_ERROR,
    "auc_bin_size": metrics.AUC_BIN_SIZE,
    "neutral_chroma": metrics.NEUTRAL_CHROMA,
    "spurious_chroma": metrics.SPURIOUS_CHROMA,
    "colored_chroma": metrics.COLORED_CHROMA,
    "wrong_error": metrics.WRONG_ERROR,
    "psnr_percentile": PSNR_PERCENTILE,
}
DEFAULT_WORST = 6


# ------------------------------------------------------------------------------------ the images


def find_images(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively) with a suffix recolor reads, sorted by relative path."""
    from recolor.io.photo import SUPPORTED_SUFFIXES

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
        self._keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        """`DATA val #i: source/file.jpg`, the photo's source file as prepare recorded it."""
        if self._keys is None:
            self._keys = self.images.keys()
        return f"{self.data_dir} val #{index}: {self._keys[index]}"

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


class _FeatureDistance:
    """The note's eq. (6) per image on a frozen feature network (VGG-16 or EfficientNet-Lite0).

    Every model of a batch is compared with the same ground truth: its feature maps are computed
    for the first model and reused for the others (the batch tensor's identity says it is the same).
    `channels_last`: the network's weights are in that layout, so the inputs are given in it too.
    """

    def __init__(self, features: torch.nn.Module, *, channels_last: bool = False) -> None:
        self._features = features.eval()
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        self._truth: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def _maps(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        return self._features(rgb.contiguous(memory_format=self._format))

    def __call__(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        if self._truth is None or self._truth[0] is not true:
            self._truth = (true, self._maps(true))
        return metrics.feature_distance(self._maps(pred), self._truth[1])


def _effnet_features(device: torch.device) -> torch.nn.Module:
    """EfficientNet-Lite0's ImageNet features at strides 2, 4 and 8, from the offline weights package."""
    from recolor.nn.encoders import PERCEPTUAL_LEVELS, PretrainedFeatures, weights_path

    weights_path("efficientnet-lite0")  # a missing package fails here, before timm's slow import
    features = PretrainedFeatures("efficientnet-lite0", PERCEPTUAL_LEVELS, pretrained=True)
    # Its depthwise convolutions run in about 40 % less CPU time on channels-last tensors (same maps to 1e-4).
    return features.to(device, memory_format=torch.channels_last)


def _vgg_features(device: torch.device) -> torch.nn.Module:
    """VGG-16's ImageNet features at relu1_2, relu2_2, relu3_3 (torchvision's download)."""
    from recolor.nn.vgg import VGGFeatures

    with _download_timeout():
        return VGGFeatures(pretrained=True).to(device)


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
    """(metric, None) when its weights load, else (None, a one-line reason). Tries once, no retries.

    What the libraries print while loading (torch.hub's "Downloading: ..." line, warnings) is held
    back: on failure the one-line reason is all the user sees; on success it is passed on to stderr.
    """
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
        metric, reason = _try_perceptual(name, device)
    if metric is not None and captured.getvalue():
        sys.stderr.write(captured.getvalue())
    return metric, reason


def _try_perceptual(name: str, device: torch.device) -> tuple[Any, str | None]:
    needs_torchmetrics = name in ("lpips", "fid")
    if needs_torchmetrics and importlib.util.find_spec("torchmetrics") is None:
        return None, f"torchmetrics is not installed ({METRICS_EXTRA})"
    try:
        if name == "effnet":
            try:
                return _FeatureDistance(_effnet_features(device), channels_last=True), None
            except RecolorError as error:  # ModelError: the weights package is missing or damaged
                return None, str(error)  # cause and fix: both speak of what eval needs
        if name == "vgg":
            return _FeatureDistance(_vgg_features(device)), None
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
        what = {"effnet": "EfficientNet-Lite0", "vgg": "VGG-16", "lpips": "AlexNet (torchvision)",
                "fid": "Inception-v3 (torch-fidelity)"}[name]
        reason = str(getattr(error, "reason", error)).splitlines()[0]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        return None, (f"the {what} weights could not be downloaded ({reason}); run once on a machine with "
                      f"internet, or copy the file into {cache}")


# -------------------------------------------------------------------------------------- the run


def _colorize(model: ScoredModel, lightness: torch.Tensor) -> torch.Tensor:
    """True L (N, 1, H, W) in [0, 100] -> the model's sRGB (N, 3, H, W) in [0, 1], clipped to the gamut."""
    ab = denormalize_ab(model.predict(normalize_l(lightness)).float())
    return lab_to_rgb(torch.cat((lightness, ab), dim=1))


@dataclass
class _Tally:
    """One row's running sums, and the per-image values that percentiles and --samples need."""

    images: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # images where the figure is defined
    per_image: dict[str, list[float]] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)  # dataset positions, in the order of per_image
    class_sums: torch.Tensor | None = None  # rebalanced AuC: pixel accuracy and pixel count per ab class
    class_counts: torch.Tensor | None = None

    def add(self, name: str, per_image: torch.Tensor, *, keep: bool = False) -> None:
        values = per_image.double()
        defined = ~torch.isnan(values)  # NaN: undefined for that image (`wrong` on a photo with no colored pixel)
        self.sums[name] = self.sums.get(name, 0.0) + values[defined].sum().item()
        self.counts[name] = self.counts.get(name, 0) + int(defined.sum())
        if keep:
            self.per_image.setdefault(name, []).extend(values.tolist())

    def add_classes(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        self.class_sums = sums if self.class_sums is None else self.class_sums + sums
        self.class_counts = counts if self.class_counts is None else self.class_counts + counts

    def mean(self, name: str) -> float | None:
        if not self.counts.get(name):
            return None
        return self.sums[name] / self.counts[name]


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
    engine: str = "auto",
    precision: str = "auto",
    workers: int | None = None,
    perceptual: bool = True,
    samples: str | Path | None = None,
    worst: int = DEFAULT_WORST,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Report:
    """Score the gray baseline and `models` on the photos in `data` at size x size.

    `engine`, `precision`: what runs each model, as for `recolor apply` (auto: OpenVINO in bf16 on a
    CPU with native bf16, else f32; torch on a GPU), so the table scores what apply ships.
    `workers`: processes decoding photos; None picks 0 on a CPU (the metrics already use every
    core, and extra decoders only compete with them) and up to 4 beside a GPU.
    `samples`: a folder for each model's sheet of its `worst` photos by PSNR and by spurious color
    (`recolor.eval.samples`), with an index.html; `Report.samples` is that page.
    `on_start(total)` is called once the photos are listed, `on_batch(count)` after each batch
    (for a progress bar). Images that cannot be read are left out and listed in `Report.skipped`.
    """
    from recolor.allocator import keep_freed_memory
    from recolor.devices import resolve_device

    keep_freed_memory()  # each batch's tensors are the same sizes: see recolor.allocator
    started = time.perf_counter()
    if size < 32:
        raise UsageError(f"--size {size} is too small", "use --size 32 or more (256 is the protocol)")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} must be at least 1")
    if worst < 1:
        raise UsageError(f"--worst {worst} must be at least 1")
    device = device if isinstance(device, torch.device) else resolve_device(device)
    data = Path(data)
    dataset = open_images(data, size=size, limit=limit)
    unavailable: dict[str, str] = {}
    scored = load_models(models, all_builtin=all_builtin, device=device, size=size, unavailable=unavailable,
                         engine=engine, precision=precision)

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
    tallies = {model.name: _Tally() for model in scored}
    truth = _Tally()
    skipped: list[dict[str, str]] = []
    offset = 0
    finished = 0  # photos of the batches scored so far
    try:
        with torch.inference_mode():
            for batch, failures, count in loader:
                failed = {index for index, _ in failures}
                for index, reason in failures:
                    skipped.append({"file": dataset.name(index), "reason": reason})
                positions = [index for index in range(offset, offset + count) if index not in failed]
                offset += count
                if batch is not None:
                    # uint8 from the loader (a quarter of the bytes between processes), [0, 1] here.
                    rgb = batch.to(device, non_blocking=True).float() / 255
                    lab = rgb_to_lab(rgb)
                    lightness = lab[:, :1]
                    truth.images += rgb.shape[0]
                    truth.add("colorfulness", metrics.colorfulness(rgb))
                    for model in scored:
                        _sync(device)
                        tick = time.perf_counter()
                        pred = _colorize(model, lightness)
                        _sync(device)
                        total = tallies[model.name]
                        total.seconds += time.perf_counter() - tick
                        total.images += rgb.shape[0]
                        total.positions.extend(positions)
                        total.add("psnr", metrics.psnr(pred, rgb), keep=True)
                        total.add("ssim", metrics.ssim(pred, rgb))
                        total.add("colorfulness", metrics.colorfulness(pred))
                        # The ab the user sees: that of the output after the gamut clip, not the raw prediction.
                        figures = metrics.color_figures(rgb_to_lab(pred), lab)
                        total.add("auc", figures.auc)
                        total.add_classes(*figures.class_sums)
                        total.add("spurious", figures.spurious, keep=True)
                        total.add("wrong", figures.wrong)
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
        total = tallies[model.name]
        row = Row(model=model.name, psnr=total.mean("psnr"),
                  psnr_p10=metrics.percentile(total.per_image["psnr"], PSNR_PERCENTILE),
                  ssim=total.mean("ssim"), colorfulness=total.mean("colorfulness"),
                  auc=total.mean("auc"), auc_rebalanced=metrics.rebalanced_auc(total.class_sums, total.class_counts),
                  spurious=total.mean("spurious"), wrong=total.mean("wrong"),
                  effnet=total.mean("effnet"), vgg=total.mean("vgg"), lpips=total.mean("lpips"),
                  images_per_s=total.images / total.seconds if total.seconds > 0 else None)
        row.delta_cf = row.colorfulness - gt_cf if row.colorfulness is not None and gt_cf is not None else None
        if model.name in fids:
            row.fid = _compute_fid(fids[model.name], unavailable)
        rows.append(row)
    report = Report(data=str(data), size=size, n=n, ground_truth_colorfulness=gt_cf, rows=rows,
                    thresholds=dict(THRESHOLDS), unavailable=unavailable, skipped=skipped)
    if samples is not None:
        report.samples = str(_write_samples(Path(samples), dataset, scored[1:], tallies, worst=worst,
                                            device=device, report=report))
    report.seconds = time.perf_counter() - started
    return report


def _write_samples(folder: Path, dataset: Dataset, models: Sequence[ScoredModel], tallies: dict[str, _Tally], *,
                   worst: int, device: torch.device, report: Report) -> Path:
    """Each model's sheet of its `worst` photos by PSNR and by spurious color; returns the index page.

    The chosen photos are decoded and colorized again (a few per model) rather than kept in memory
    through the whole run; the protocol is deterministic, so they are the images that were scored.
    """
    from recolor.eval import samples as eval_samples

    def renderer(model: ScoredModel) -> Callable[[list[int]], dict[int, tuple[torch.Tensor, ...]]]:
        def render(positions: list[int]) -> dict[int, tuple[torch.Tensor, ...]]:
            cells = {}
            with torch.inference_mode():
                for start in range(0, len(positions), 16):
                    chunk = positions[start:start + 16]
                    rgb = torch.stack([dataset[position][1] for position in chunk]).to(device).float() / 255
                    lightness = rgb_to_lab(rgb)[:, :1]
                    gray = lab_to_rgb(torch.cat((lightness, torch.zeros_like(rgb[:, :2])), dim=1))
                    pred = _colorize(model, lightness)
                    cells.update({position: (gray[i], pred[i], rgb[i]) for i, position in enumerate(chunk)})
            return cells

        return render

    runs = [eval_samples.ModelRun(name=model.name, positions=tallies[model.name].positions,
                                  psnr=tallies[model.name].per_image.get("psnr", []),
                                  spurious=tallies[model.name].per_image.get("spurious", []),
                                  render=renderer(model))
            for model in models]
    return eval_samples.write_samples(folder, runs, worst=worst, report=report, name_of=dataset.name)


def _compute_fid(metric, unavailable: dict[str, str]) -> float | None:
    try:
        return float(metric.compute())
    except RuntimeError as error:  # torchmetrics: fewer than 2 images on a side
        unavailable.setdefault("fid", str(error).splitlines()[0])
        return None
