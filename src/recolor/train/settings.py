"""How a run trains: TrainSettings, what may change on resume, the run folder's names, precision."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from recolor.errors import UsageError
from recolor.nn.perceptual import DEFAULT_BACKBONE
from recolor.nn.pretrained import UNET



CHECKPOINT_NAME = "checkpoint.pt"
EPOCHS_DIR = "epochs"  # with --keep-epochs: epochs/epoch_NNN/ (config.json + model.safetensors) per epoch
METRICS_NAME = "metrics.jsonl"
SAMPLES_DIR = "samples"
CHECKPOINT_FORMAT = 1
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Finite-loss checks (and, under DDP, the Ctrl-C agreement between ranks) happen every this many
# batches: each one synchronises with the device, so not every batch.
SYNC_EVERY = 20


@dataclass(frozen=True)
class TrainSettings:
    """How a run trains (the recipe says what it trains). None: the recipe's or the data's default.

    Fields in RESUME_CHANGEABLE may differ when a run is resumed; the others are fixed by the run.
    """

    epochs: int | None = None            # total epochs of the run (None: the recipe's)
    batch_size: int = 16                 # per process
    size: int | None = None              # training crop in pixels (None: the prepared size)
    width: int = 64                      # base width of G and D (64 in the note)
    seed: int = 0
    flip: bool = True                    # random horizontal flips
    val_images: int = 64                 # validation images for the PSNR (the first of the val split)
    sample_images: int = 6               # rows in samples/epoch_NNN.png
    perceptual_backbone: str = DEFAULT_BACKBONE
    steps_per_epoch: int | None = None   # cap on batches per epoch (short runs, benchmarks)
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    channels_last: bool | None = None    # None: on for CUDA, off for CPU
    init_from: str | None = None         # a run folder or a model whose networks a new run starts from
    keep_epochs: bool = False            # also keep each epoch's generator in epochs/epoch_NNN/
    encoder: str = UNET                  # the generator's encoder: the note's U-Net or a pretrained network
    encoder_frozen_epochs: int = 1       # a pretrained encoder stays frozen in epochs 1..N (DeOldify)
    encoder_tune: str = "deep"           # after that: which part trains ("deep": strides 16-32, "all", "none")
    encoder_lr_scale: float = 0.1        # its learning rate, as a fraction of the generator's
    old_photo: float = 0.0               # probability of old-photo faults on a training input's L
    gan: bool = True                     # False: NoGAN warm-up, the reconstruction losses alone, no critic

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RESUME_CHANGEABLE = frozenset({"epochs", "steps_per_epoch", "workers", "device", "precision", "compile",
                               "channels_last", "keep_epochs", "encoder_frozen_epochs", "encoder_tune",
                               "encoder_lr_scale", "old_photo"})
ENCODER_TUNE = ("deep", "all", "none")
# Overrides that change the networks cannot change when a run resumes.
NETWORK_OVERRIDES = frozenset({"d_layers", "g_norm"})


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` on `device` (None: plain fp32)."""
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}", f"use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if name == "fp32":
        return None
    if name == "fp16" and device.type != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA device, not {device.type}",
                         "use --precision bf16 or fp32 on this device")
    return torch.bfloat16 if name == "bf16" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
