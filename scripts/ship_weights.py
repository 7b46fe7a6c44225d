"""Ship a trained run as a built-in model: fp16 weights + config + metrics + model card in the package.

    python scripts/ship_weights.py RUN NAME [--eval eval.json] [--card-info card.json]

Writes src/recolor/weights/NAME/ (config.json, model.safetensors in fp16, the OpenVINO export
made from those fp16 weights with its export.json, metrics.jsonl, README.md = the model card) and
docs/models/NAME.md (the same card), then prints the sha256 of model.safetensors and of export.json
to pin in recolor.hub.registry.BUILTIN_MODELS. Rerun it with --eval once
`recolor eval` has scored the shipped model, so the card carries the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from recolor.engine.export import export_folder, remove_export  # noqa: E402
from recolor.hub.exports import RECORD_NAME  # noqa: E402
from recolor.hub.registry import BUILTIN_MODELS, WEIGHTS_ROOT  # noqa: E402
from recolor.push.cards import write_model_card  # noqa: E402
from recolor.nn.pretrained import CONFIG_NAME, WEIGHTS_NAME, load_generator, read_config, save_generator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder written by `recolor train`")
    parser.add_argument("name", choices=sorted(BUILTIN_MODELS), help="the built-in name it ships as")
    parser.add_argument("--eval", type=Path, help="`recolor eval --format json` output holding a row for NAME")
    parser.add_argument("--card-info", type=Path, help="JSON of what the run does not record (see recolor.push.cards)")
    args = parser.parse_args()

    target = WEIGHTS_ROOT / args.name
    card_info = json.loads(args.card_info.read_text(encoding="utf-8")) if args.card_info else {}
    entry = BUILTIN_MODELS[args.name]
    card_info = {"name": args.name, "model_spec": args.name, "repo_id": entry.repo_id, **card_info}

    generator, _ = load_generator(args.run)
    run_config = read_config(args.run)
    metadata = {key: value for key, value in run_config.items()
                if key not in ("architecture", "generator", "recolor_version", "card")}
    metadata["card"] = card_info
    metadata["shipped_from_run"] = args.run.name
    remove_export(target)
    save_generator(generator, target, metadata=metadata, half=True)
    export_folder(target)  # from the fp16 weights as shipped, so the export is made from what is pinned
    if (args.run / "metrics.jsonl").is_file():
        shutil.copyfile(args.run / "metrics.jsonl", target / "metrics.jsonl")

    report = json.loads(args.eval.read_text(encoding="utf-8")) if args.eval else None
    card = write_model_card(target, eval_report=report)
    (target / "README.md").write_text(card, encoding="utf-8")
    (ROOT / "docs" / "models" / f"{args.name}.md").write_text(card, encoding="utf-8")

    digest = hashlib.sha256((target / WEIGHTS_NAME).read_bytes()).hexdigest()
    size_mb = (target / WEIGHTS_NAME).stat().st_size / 1e6
    print(f"{target}: {WEIGHTS_NAME} {size_mb:.1f} MB, sha256 {digest}")
    export_digest = hashlib.sha256((target / RECORD_NAME).read_bytes()).hexdigest()
    print(f"{target}: {RECORD_NAME} sha256 {export_digest} (export_sha256)")
    print(f"config: {target / CONFIG_NAME}; card: docs/models/{args.name}.md")


if __name__ == "__main__":
    main()
