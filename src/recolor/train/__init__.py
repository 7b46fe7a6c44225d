"""`recolor train`: the one training loop, for every recipe, on one device or many (DDP).

`train(recipe_name, data, ...)` runs a recipe from `recolor.train.recipes` on a prepared data folder and
writes a run folder that describes itself:

    runs/NAME/config.json          recipe, networks, data, seed, versions (the generator's config)
    runs/NAME/model.safetensors    the generator: the folder loads with load_generator / --model
    runs/NAME/openvino_model.*     its export for apply on a CPU, with export.json (each end of epoch)
    runs/NAME/checkpoint.pt        everything to resume (plain tensors and numbers: weights_only)
    runs/NAME/metrics.jsonl        one JSON line per epoch, epochs counted from 1
    runs/NAME/samples/epoch_NNN.png  L | prediction | ground truth on fixed validation images

The loop knows nothing of recipes: it calls the recipe's adversarial strategy and weights the
reconstruction losses with the recipe's numbers. Several processes started by `torchrun` train
one model with DDP (gloo on CPUs, nccl on CUDA); only rank 0 validates, logs and writes.

Modules: `settings` (TrainSettings, names, precision), `plan` (new or resumed runs, checkpoints),
`distributed` (torchrun's process group), `batches` (sampler, crops), `loop` (the trainer) and
`display` (what the loop reports).
"""

from recolor.train.batches import center_crop, crop_and_flip
from recolor.train.display import Display, RichDisplay
from recolor.train.distributed import DistContext, setup_distributed
from recolor.train.loop import TrainResult, train
from recolor.train.plan import load_checkpoint
from recolor.train.settings import (CHECKPOINT_NAME, ENCODER_TUNE, EPOCHS_DIR, METRICS_NAME, PRECISIONS,
                                    RESUME_CHANGEABLE, SAMPLES_DIR, TrainSettings)

__all__ = ["CHECKPOINT_NAME", "ENCODER_TUNE", "EPOCHS_DIR", "METRICS_NAME", "PRECISIONS", "RESUME_CHANGEABLE",
           "SAMPLES_DIR", "Display", "DistContext", "RichDisplay", "TrainResult", "TrainSettings", "center_crop",
           "crop_and_flip", "load_checkpoint", "setup_distributed", "train"]
