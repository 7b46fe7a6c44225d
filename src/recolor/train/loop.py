"""The one training loop, for every recipe: `train()` and the trainer that runs the epochs.

The loop knows nothing of recipes: it calls the recipe's adversarial strategy and weights the
reconstruction losses with the recipe's numbers. Only rank 0 validates, logs and writes.

Why one file of ~700 lines: it is one object, the trainer, whose state (networks, optimizers,
scaler, running means, the stop flag, the run folder) every step, validation and save reads and
writes; cutting it would pass that state between files. Its parts that stand alone already live
beside it (settings, plan, distributed, batches, display, recipes, losses).
"""

from __future__ import annotations

import json
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader

from recolor import __version__
from recolor.allocator import keep_freed_memory
from recolor.color import denormalize_ab, network_to_rgb, rgb_to_network
from recolor.devices import resolve_device
from recolor.errors import DataError, TrainingError, UsageError
from recolor.train.losses import floor_neutral_weights, perceptual_loss, rebalanced_l1
from recolor.engine.export import export_folder, remove_export
from recolor.hub.registry import resolve_model
from recolor.nn import PatchDiscriminator
from recolor.nn.perceptual import build_backbone, check_backbone, layers_for
from recolor.nn.pretrained import UNET, load_generator, make_generator, read_config, save_generator

from recolor.train.batches import ResumableSampler, center_crop, crop_and_flip, worker_signals
from recolor.train.display import Display
from recolor.train.distributed import DistContext, all_agree, barrier, setup_distributed
from recolor.train.plan import RunPlan, load_checkpoint, plan_run
from recolor.train.settings import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, ENCODER_TUNE, EPOCHS_DIR, METRICS_NAME,
                                    SAMPLES_DIR, SYNC_EVERY, precision_name, resolve_precision)


@dataclass
class TrainResult:
    run_dir: Path | None                 # None on ranks other than 0
    epochs_done: int
    interrupted: bool
    metrics: list[dict[str, Any]] = field(default_factory=list)  # the epochs this call trained
    generator: nn.Module | None = None   # the trained generator (unwrapped), on the training device


def _prepare_summary(info: dict[str, Any]) -> dict[str, Any]:
    """prepare.json without its bulky parts (the histogram, the weights, the list of skipped files)."""
    summary = {}
    for key, value in info.items():
        if key == "skipped" and isinstance(value, list):
            summary["skipped"] = len(value)
        elif key == "ab_weights" and isinstance(value, dict):
            edges = value.get("bin_edges") or []
            summary["ab_weights"] = {"bins": max(len(edges) - 1, 0), "eps": value.get("eps"),
                                     "range": [edges[0], edges[-1]] if edges else None}
        else:
            summary[key] = value
    return summary


def _versions() -> dict[str, str]:
    import torchvision

    return {"recolor": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------------
# Ctrl-C


class _StopFlag:
    """First Ctrl-C (SIGINT) or SIGTERM: finish the current batch, save, stop. A second: stop at once.

    SIGTERM counts too: torchrun passes it on to its workers when it is interrupted, and cluster
    schedulers send it before they preempt a job.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for signum in self._SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


# ---------------------------------------------------------------------------------------------------
# Epoch accounting


class _Running:
    """Sums of the losses over an epoch, kept on the device so the loop never waits for them."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {key: float(total.item()) / self.counts[key] for key, total in self.sums.items()}

    def finite(self) -> bool:
        return all(bool(torch.isfinite(total).item()) for total in self.sums.values())

    def state(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "counts": dict(self.counts)}

    def load(self, state: dict[str, Any]) -> None:
        self.sums = {k: v.to(self.device) for k, v in state["sums"].items()}
        self.counts = dict(state["counts"])


def train(recipe_name: str, data: str | Path | None, *, out: str | Path = "runs", name: str | None = None,
          resume: str | None = None, settings: dict[str, Any] | None = None,
          overrides: dict[str, Any] | None = None, display: Display | None = None) -> TrainResult:
    """Train `recipe_name` (a key of recolor.train.recipes.RECIPES) on the prepared folder `data`.

    settings: TrainSettings fields (None or absent: defaults; on resume, the run's values);
    overrides: recipe numbers (see recolor.train.recipes.apply_overrides). Returns when the run has
    trained `epochs` epochs, or after a Ctrl-C (interrupted=True, a checkpoint saved).
    Raises TrainingError on a NaN or infinite loss (the last good checkpoint stays).
    """
    settings = dict(settings or {})
    keep_freed_memory()  # no page faults for each step's activations: see recolor.allocator
    ctx = setup_distributed(str(settings.get("device") or "auto"))
    try:
        plan = plan_run(recipe_name, Path(data) if data is not None else None, out=Path(out), name=name,
                     resume=resume, settings=settings, overrides=dict(overrides or {}))
        return _Trainer(plan, ctx, display if ctx.is_main else None).run()
    finally:
        if ctx.initialized_here:
            torch_dist.destroy_process_group()


class _Trainer:
    """State of one training session; `run()` is the loop."""

    def __init__(self, plan: RunPlan, ctx: DistContext, display: Display | None) -> None:
        from recolor.data.rebalance import ABWeights
        from recolor.data.store import PreparedImages, read_prepare_json

        self.plan = plan
        self.ctx = ctx
        self.display = display
        recipe = plan.recipe
        s = plan.settings
        self.epochs = s.epochs if s.epochs is not None else recipe.epochs
        check_backbone(s.perceptual_backbone)
        if s.encoder_tune not in ENCODER_TUNE:
            raise UsageError(f"unknown --encoder-tune {s.encoder_tune!r}", f"choose one of {', '.join(ENCODER_TUNE)}")
        if not 0.0 <= s.old_photo <= 1.0:
            raise UsageError(f"--old-photo {s.old_photo} is not a probability", "use a value in [0, 1], e.g. 0.6")

        device = resolve_device(s.device)
        if device.type == "cuda" and ctx.active:
            device = torch.device("cuda", ctx.local_rank)
        self.device = device
        self.amp_dtype = resolve_precision(s.precision, device)
        self.channels_last = s.channels_last if s.channels_last is not None else device.type == "cuda"

        # The perceptual backbone first: without network it must fail in seconds, before any data
        # is read or any run folder is made.
        self.features = None
        # The recipe's layers are VGG-16's; another backbone uses its own unless layers were given.
        chosen = recipe.perceptual_layers if ("perceptual_layers" in plan.overrides
                                              or s.perceptual_backbone.startswith("vgg16")) else None
        self.perceptual_layers = layers_for(s.perceptual_backbone, chosen)
        if recipe.perceptual_weight > 0:
            self.features = build_backbone(s.perceptual_backbone, self.perceptual_layers).to(device)
            if self.channels_last:
                self.features = self.features.to(memory_format=torch.channels_last)

        self.prepare_info = read_prepare_json(plan.data)
        self.train_set = PreparedImages(plan.data, "train")
        # Data prepared with --split train has no validation images: the run then logs no val metrics.
        self.val_set = PreparedImages(plan.data, "val") if self.prepare_info.get("counts", {}).get("val") else None
        self.store_size = int(self.train_set.size)
        self.size = s.size if s.size is not None else self.store_size
        torch.manual_seed(s.seed)  # the same initial networks on every rank and in every rerun
        self.generator = make_generator(encoder=s.encoder, width=s.width, **recipe.generator).to(device)
        if s.encoder != UNET and plan.checkpoint is None and s.init_from is None:
            # A new run starts from the ImageNet weights (a resumed or fine-tuned one has its own).
            from recolor.nn.encoders import load_pretrained

            load_pretrained(self.generator.encoder, s.encoder)
        stride = self.generator.stride
        if self.size > self.store_size:
            raise UsageError(f"--size {self.size} is larger than the prepared images ({self.store_size} px)",
                             f"use --size {self.store_size} or less, or prepare the data at a larger --size")
        if self.size % stride:
            raise UsageError(f"--size {self.size} is not a multiple of {stride}, which the U-Net needs",
                             f"use e.g. --size {max(stride, self.size // stride * stride)}")
        if s.batch_size < 2:
            raise UsageError("--batch-size must be at least 2", "batch statistics need two images or more")
        needed = s.batch_size * ctx.world_size
        if len(self.train_set) < needed:
            raise DataError(f"{plan.data} has {len(self.train_set)} training images, fewer than one batch ({needed})",
                            "lower --batch-size or prepare more images")
        self.ab_weights = ABWeights.from_data_dir(plan.data).to(device)

        self.critic = PatchDiscriminator(width=s.width, **recipe.discriminator).to(device)
        if self.channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
            self.critic = self.critic.to(memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(self._generator_groups(), lr=recipe.lr_g, betas=recipe.betas_g)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=recipe.lr_d, betas=recipe.betas_d)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        # Crops and flips draw from their own generator, saved with the checkpoint, so a resumed
        # run sees the same augmentations as an uninterrupted one.
        self.augment_rng = torch.Generator().manual_seed(s.seed * 1_000_003 + ctx.rank)
        # Old-photo faults draw from another one, so turning them on leaves the crops as they were.
        self.degrade_rng = torch.Generator().manual_seed(s.seed * 1_000_033 + ctx.rank)

        self.epochs_done = 0
        self.batches_done = 0        # within the epoch in progress
        self.total_batches = 0       # over the whole run: decides which batches also step G
        self.running = _Running(device)
        if plan.checkpoint is not None:
            self._restore(plan.checkpoint)
        elif s.init_from is not None:
            self._start_from_run(Path(s.init_from))

        self.train_g: nn.Module = self.generator
        self.train_d: nn.Module = self.critic
        if ctx.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.train_g = DDP(self.generator, device_ids=ids)
            self.train_d = DDP(self.critic, device_ids=ids)
        # The generator step scores fakes with the bare critic: DDP would wait for critic gradients
        # that are never computed there (the critic is frozen during that step).
        self.critic_for_g: nn.Module = self.critic
        if s.compile:
            self.train_g = torch.compile(self.train_g)
            self.train_d = torch.compile(self.train_d)
            self.critic_for_g = torch.compile(self.critic)

        self.sampler = ResumableSampler(self.train_set, ctx=ctx, seed=s.seed)
        self.loader = DataLoader(self.train_set, batch_size=s.batch_size, sampler=self.sampler,
                                 num_workers=s.workers, pin_memory=device.type == "cuda", drop_last=True,
                                 persistent_workers=s.workers > 0, worker_init_fn=worker_signals,
                                 # Its own generator: creating an iterator then leaves the global RNG
                                 # (used by the gradient penalty) alone, so a resumed run matches.
                                 generator=torch.Generator().manual_seed(s.seed))
        full_batches = len(self.sampler.inner) // s.batch_size
        self.batches_per_epoch = min(full_batches, s.steps_per_epoch or full_batches)
        self._load_validation()

    # -- setup helpers --------------------------------------------------------------------------

    def _load_validation(self) -> None:
        s = self.plan.settings
        count = min(s.val_images, len(self.val_set)) if self.val_set is not None else 0
        if not self.ctx.is_main or count == 0:
            self.val_rgb = None
            return
        images = torch.stack([self.val_set[i] for i in range(count)])
        self.val_rgb = center_crop(images, self.size).to(self.device)

    def _generator_groups(self) -> list[dict[str, Any]]:
        """The generator's parameters for Adam: one group, or decoder and encoder (a lower lr) apart."""
        lr = self.plan.recipe.lr_g
        if not hasattr(self.generator, "encoder_parameters"):
            return [{"params": list(self.generator.parameters()), "lr": lr}]
        return [{"params": self.generator.decoder_parameters(), "lr": lr},
                {"params": self.generator.encoder_parameters(), "lr": lr * self.plan.settings.encoder_lr_scale}]

    def _set_encoder_trainable(self, epoch: int) -> None:
        """Freeze a pretrained encoder for the first epochs, then let `encoder_tune`'s part train.

        Frozen parameters get no gradient, so the backward pass stops at the decoder (the frozen
        encoder costs a forward pass only); under DDP the wrapper is rebuilt when that changes.
        """
        if not hasattr(self.generator, "encoder_parameters"):
            return
        s = self.plan.settings
        part = "none" if epoch <= s.encoder_frozen_epochs else s.encoder_tune
        wanted = {id(p) for p in self.generator.encoder_parameters(part)} if part != "none" else set()
        changed = False
        for parameter in self.generator.encoder_parameters():
            trainable = id(parameter) in wanted
            changed |= parameter.requires_grad != trainable
            parameter.requires_grad_(trainable)
        self.encoder_part = part
        if changed and self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_g = DDP(self.generator, device_ids=ids)

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.generator.load_state_dict(checkpoint["generator"])
        self.critic.load_state_dict(checkpoint["critic"])
        self.opt_g.load_state_dict(checkpoint["opt_g"])
        self.opt_d.load_state_dict(checkpoint["opt_d"])
        # Learning rates come from the (possibly overridden) recipe, not from the saved optimizer.
        for group, fresh in zip(self.opt_g.param_groups, self._generator_groups()):
            group["lr"] = fresh["lr"]
        for group in self.opt_d.param_groups:
            group["lr"] = self.plan.recipe.lr_d
        for scaler, key in ((self.scaler_g, "scaler_g"), (self.scaler_d, "scaler_d")):
            if checkpoint.get(key):
                scaler.load_state_dict(checkpoint[key])
        self.epochs_done = checkpoint["epochs_done"]
        self.batches_done = checkpoint["batches_done"]
        self.total_batches = checkpoint["total_batches"]
        rng = checkpoint["rng"]
        self.augment_rng.set_state(rng["augment"][self.ctx.rank % len(rng["augment"])])
        if rng.get("degrade"):
            self.degrade_rng.set_state(rng["degrade"][self.ctx.rank % len(rng["degrade"])])
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if checkpoint.get("running"):
            self.running.load(checkpoint["running"])

    def _start_from_run(self, source: Path) -> None:
        """Start a new run from another run's generator, and its critic when it had one of this recipe.

        Only the networks carry over: optimizers, epochs and the λ schedule start afresh, so a run
        trained at one crop size can continue at another (progressive resizing) or with other losses.
        A NoGAN warm-up (`--no-gan`) or a run of another recipe gives its generator alone (the same
        generator: encoder, width and norm), and the critic starts new: that is how the three
        recipes share one warm-up (DeOldify's NoGAN).
        """
        path = source / CHECKPOINT_NAME if source.is_dir() else source
        if not path.is_file():
            self._start_from_model(str(source))
            return
        checkpoint = load_checkpoint(path)
        recipe_name = self.plan.recipe_name
        saved = checkpoint["settings"]
        same_critic = checkpoint["recipe_name"] == recipe_name and saved.get("gan", True)
        if saved.get("encoder", UNET) != self.plan.settings.encoder:
            raise UsageError(f"--init-from {source} has the encoder {saved.get('encoder', UNET)!r}, "
                             f"not {self.plan.settings.encoder!r}", f"use --encoder {saved.get('encoder', UNET)}")
        try:
            self.generator.load_state_dict(checkpoint["generator"])
            if same_critic:
                self.critic.load_state_dict(checkpoint["critic"])
        except RuntimeError:
            saved = checkpoint["settings"]
            raise UsageError(f"--init-from {source} has other networks (width {saved.get('width')}, "
                             f"overrides {checkpoint['overrides']})",
                             f"use --width {saved.get('width')} and the same --d-layers as that run") from None

    def _start_from_model(self, spec: str) -> None:
        """Start from a trained model's generator: a built-in name, a weights folder or a Hub id.

        A model keeps no critic and no optimizer state, so both start afresh, as from a warm-up.
        This is how a built-in model is trained further (`--init-from progan`) once its run
        folder is gone: the safetensors hold every weight of the generator, BatchNorm statistics
        included.
        """
        try:
            folder = resolve_model(spec)
        except UsageError:
            raise UsageError(f"--init-from {spec}: not a run folder (no {CHECKPOINT_NAME}) and not a model",
                             "point --init-from at a run folder written by `recolor train`, a built-in model "
                             "name or a folder holding config.json + model.safetensors") from None
        theirs = read_config(folder).get("generator", {})
        ours = self.generator.config
        if theirs != ours:
            raise UsageError(f"--init-from {spec} has another generator ({_describe(theirs)}) than this run's "
                             f"({_describe(ours)})",
                             f"use --encoder {theirs.get('encoder', UNET)} --width {theirs.get('width')} "
                             f"--g-norm {theirs.get('norm')}")
        trained, _ = load_generator(folder)
        self.generator.load_state_dict(trained.state_dict())

    # -- one batch -----------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _to_network(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 RGB batch from the loader -> (L, ab) in network units on the device, cropped and flipped."""
        batch = batch.to(self.device, non_blocking=True)
        n = batch.shape[0]
        offsets = torch.randint(0, self.store_size - self.size + 1, (n, 2), generator=self.augment_rng)
        flips = torch.rand(n, generator=self.augment_rng) < (0.5 if self.plan.settings.flip else 0.0)
        rgb = crop_and_flip(batch, offsets, flips, self.size).float().div_(255)
        l_norm, ab_norm = rgb_to_network(rgb)
        if self.channels_last:
            l_norm = l_norm.contiguous(memory_format=torch.channels_last)
            ab_norm = ab_norm.contiguous(memory_format=torch.channels_last)
        return l_norm, ab_norm

    def _network_input(self, l_norm: torch.Tensor) -> torch.Tensor:
        """What the generator sees: L, with old-photo faults on a share of the photos (`old_photo`).

        The critic, the losses and validation keep the clean L: only the generator's input changes.
        """
        p = self.plan.settings.old_photo
        if p <= 0:
            return l_norm
        from recolor.data.degrade import degrade_lightness

        degraded = degrade_lightness(l_norm, p=p, generator=self.degrade_rng)
        return degraded.contiguous(memory_format=torch.channels_last) if self.channels_last else degraded

    def _step(self, batch: torch.Tensor, recon_weight: float) -> None:
        recipe = self.plan.recipe
        adversarial = self.plan.settings.gan
        l_norm, ab_true = self._to_network(batch)
        generator_turn = not adversarial or (self.total_batches + 1) % recipe.critic_steps == 0
        with self._autocast(), torch.set_grad_enabled(generator_turn):
            ab_fake = self.train_g(self._network_input(l_norm))
        real = torch.cat((l_norm, ab_true), dim=1)
        fake = torch.cat((l_norm, ab_fake.float()), dim=1)

        values: dict[str, torch.Tensor] = {}
        if adversarial:
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_loss, d_parts = recipe.adversarial.d_loss(self.train_d, real, fake.detach(),
                                                            eager_critic=self.critic)
            self.scaler_d.scale(d_loss).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            values = {"d_loss": d_loss, **d_parts}

        if generator_turn:
            self.critic.requires_grad_(False)
            self.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                # NoGAN warm-up: no critic yet, the reconstruction losses alone.
                g_adv = (recipe.adversarial.g_loss(self.critic_for_g, fake) if adversarial
                         else fake.new_zeros(()))
                weights = floor_neutral_weights(self.ab_weights.lookup(denormalize_ab(ab_true)), ab_true,
                                                recipe.neutral_weight_floor)
                l1 = rebalanced_l1(ab_fake, ab_true, weights)
                g_recon = recon_weight * l1
                values["l1"] = l1
                if self.features is not None:
                    perceptual = perceptual_loss(l_norm, ab_fake, ab_true, self.features)
                    g_recon = g_recon + recipe.perceptual_weight * perceptual
                    values["perceptual"] = perceptual
                for term in recipe.extra_losses:
                    value = term(l_norm, ab_fake, ab_true)
                    g_recon = g_recon + term.weight * value
                    values[term.name] = value
                g_loss = g_adv + g_recon
            self.scaler_g.scale(g_loss).backward()
            self.scaler_g.step(self.opt_g)
            self.scaler_g.update()
            self.critic.requires_grad_(True)
            values.update(g_loss=g_loss, g_adv=g_adv, g_recon=g_recon)
        self.running.add(values)

    # -- validation and outputs (rank 0) --------------------------------------------------------

    @torch.no_grad()
    def _validate(self) -> dict[str, float | None]:
        from recolor.eval.metrics import psnr

        if self.val_rgb is None:
            return {"val_psnr": None, "val_psnr_gray": None, "val_ab_l1": None, "val_ab_l1_gray": None}
        self.generator.eval()
        psnrs, gray_psnrs, ab_errors, gray_errors = [], [], [], []
        for chunk in self.val_rgb.split(self.plan.settings.batch_size):
            rgb = chunk.float() / 255
            l_norm, ab_true = rgb_to_network(rgb)
            with self._autocast():
                ab_pred = self.generator(l_norm).float()
            psnrs.append(psnr(network_to_rgb(l_norm, ab_pred), rgb))
            gray_psnrs.append(psnr(network_to_rgb(l_norm, torch.zeros_like(ab_true)), rgb))
            ab_errors.append(denormalize_ab(ab_pred - ab_true).abs().flatten(1).mean(1))
            gray_errors.append(denormalize_ab(ab_true).abs().flatten(1).mean(1))
        self.generator.train()
        return {"val_psnr": torch.cat(psnrs).mean().item(), "val_psnr_gray": torch.cat(gray_psnrs).mean().item(),
                "val_ab_l1": torch.cat(ab_errors).mean().item(), "val_ab_l1_gray": torch.cat(gray_errors).mean().item()}

    @torch.no_grad()
    def _write_samples(self, epoch: int) -> None:
        from PIL import Image

        from recolor.io.atomic import atomic_write

        if self.val_rgb is None:
            return
        rgb = self.val_rgb[: self.plan.settings.sample_images].float() / 255
        l_norm, ab_true = rgb_to_network(rgb)
        self.generator.eval()
        with self._autocast():
            ab_pred = self.generator(l_norm).float()
        self.generator.train()
        gray = network_to_rgb(l_norm, torch.zeros_like(ab_true))
        pred = network_to_rgb(l_norm, ab_pred)
        # Rows: one validation image each; columns: L | prediction | ground truth.
        grid = torch.cat((gray, pred, rgb), dim=3)                       # (K, 3, S, 3S)
        grid = torch.cat(list(grid), dim=1)                              # (3, K·S, 3S)
        pixels = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        folder = self.plan.run_dir / SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        atomic_write(folder / f"epoch_{epoch:03d}.png", lambda fp: image.save(fp, format="PNG"))

    def _config_metadata(self, metrics: dict[str, Any] | None) -> dict[str, Any]:
        s = self.plan.settings
        return {
            "recipe": self.plan.recipe.to_dict(),
            "recipe_overrides": self.plan.overrides,
            "discriminator": dict(self.critic.config),
            "perceptual_backbone": s.perceptual_backbone if self.features is not None else None,
            "perceptual_layers": list(self.perceptual_layers) if self.features is not None else None,
            "training": {**s.to_dict(), "epochs": self.epochs, "size": self.size,
                         "precision_used": precision_name(self.amp_dtype), "world_size": self.ctx.world_size,
                         "epochs_done": self.epochs_done},
            "data": {"path": str(self.plan.data.resolve()), "prepare": _prepare_summary(self.prepare_info)},
            "seed": s.seed,
            "versions": _versions(),
            "metrics": metrics,
        }

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics (what is saved and validated).

        DDP broadcasts buffers before each forward, but the forward itself then updates them on
        each rank from its own batch, so after an epoch the ranks' running statistics differ.
        """
        if not self.ctx.active:
            return
        for module in (self.generator, self.critic):
            for buffer in module.buffers():
                torch_dist.broadcast(buffer, src=0)

    def _checkpoint_state(self) -> dict[str, Any]:
        augment_states = [self.augment_rng.get_state()]
        if self.ctx.active:
            gathered = [torch.empty_like(augment_states[0]) for _ in range(self.ctx.world_size)]
            torch_dist.all_gather(gathered, augment_states[0])
            augment_states = gathered
        degrade_states = [self.degrade_rng.get_state()]
        if self.ctx.active:
            gathered = [torch.empty_like(degrade_states[0]) for _ in range(self.ctx.world_size)]
            torch_dist.all_gather(gathered, degrade_states[0])
            degrade_states = gathered
        rng = {"torch": torch.get_rng_state(), "augment": augment_states, "degrade": degrade_states,
               "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        return {
            "format": CHECKPOINT_FORMAT,
            "recipe_name": self.plan.recipe_name,
            "overrides": self.plan.overrides,
            "settings": self.plan.settings.to_dict(),
            "data": str(self.plan.data),
            "epochs_done": self.epochs_done,
            "batches_done": self.batches_done,
            "total_batches": self.total_batches,
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": rng,
            "running": self.running.state() if self.batches_done else None,
        }

    def _save(self, metrics: dict[str, Any] | None) -> None:
        """Checkpoint and generator folder. Every rank takes part (the RNG gather); rank 0 writes."""
        from recolor.io.atomic import atomic_write

        state = self._checkpoint_state()
        if not self.ctx.is_main:
            return
        run_dir = self.plan.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        metadata = self._config_metadata(metrics)
        folders = [run_dir]
        # GAN training wanders from epoch to epoch: kept epochs let a held-out set pick the best
        # one afterwards (`recolor eval runs/NAME/epochs/epoch_*`). Only complete epochs are kept.
        if metrics is not None and self.plan.settings.keep_epochs:
            folders.append(run_dir / EPOCHS_DIR / f"epoch_{metrics['epoch']:03d}")
        for folder in folders:
            # The old export goes first: were the run stopped before the new one is written, apply
            # would make it from the weights rather than find one that does not match them.
            remove_export(folder)
            save_generator(self.generator, folder, metadata=metadata)
            # The export is made from the weights as saved, at each end of epoch (not on Ctrl-C,
            # where apply makes it when it is first needed).
            if metrics is not None:
                export_folder(folder)
        atomic_write(run_dir / CHECKPOINT_NAME, lambda fp: torch.save(state, fp))

    def _append_metrics(self, metrics: dict[str, Any]) -> None:
        path = self.plan.run_dir / METRICS_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fp:
            fp.write(json.dumps(metrics) + "\n")

    def _trim_metrics(self) -> None:
        """Drop lines of epochs the checkpoint does not have (a crash between the two writes)."""
        path = self.plan.run_dir / METRICS_NAME
        if not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line).get("epoch", 0) <= self.epochs_done]
        if len(kept) != len(lines):
            path.write_text("".join(line + "\n" for line in kept))

    def _check_finite(self, epoch: int) -> None:
        finite = all_agree(self.ctx, self.running.finite(), any_rank=False)
        if not finite:
            means = ", ".join(f"{k}={v:.4g}" for k, v in self.running.means().items())
            kept = (f"the checkpoint of epoch {self.epochs_done} in {self.plan.run_dir} is kept"
                    if (self.plan.run_dir / CHECKPOINT_NAME).exists() else "no checkpoint was written yet")
            raise TrainingError(
                f"a loss became NaN or infinite in epoch {epoch} near batch {self.batches_done} ({means})",
                f"{kept}; resume with lower --lr-g/--lr-d or --precision fp32")

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        s = self.plan.settings
        recipe = self.plan.recipe
        if self.ctx.is_main:
            self._trim_metrics()
        barrier(self.ctx)
        session_metrics: list[dict[str, Any]] = []
        if self.display is not None:
            self.display.start(run_dir=self.plan.run_dir, first_epoch=self.epochs_done + 1, epochs=self.epochs,
                               batches_per_epoch=self.batches_per_epoch)
        images_per_batch = s.batch_size * self.ctx.world_size
        session_start = time.perf_counter()
        session_batches = 0
        interrupted = False
        shown: dict[str, float] = {}
        try:
            with _StopFlag() as stop:
                for epoch in range(self.epochs_done + 1, self.epochs + 1):
                    recon_weight = recipe.recon_weight.at(epoch)
                    self._set_encoder_trainable(epoch)
                    self.sampler.set_epoch(epoch, skip=self.batches_done * s.batch_size)
                    epoch_start = time.perf_counter()
                    epoch_batches = 0
                    # A run resumed after the last batch of an epoch goes straight to that epoch's end.
                    batches = iter(self.loader) if self.batches_done < self.batches_per_epoch else iter(())
                    for batch in batches:
                        self._step(batch, recon_weight)
                        self.batches_done += 1
                        self.total_batches += 1
                        epoch_batches += 1
                        session_batches += 1
                        at_sync = self.batches_done % SYNC_EVERY == 0
                        if at_sync:
                            self._check_finite(epoch)
                        if self.display is not None:
                            # Loss values need a device sync: read them only at sync points.
                            if at_sync or self.batches_done == 1:
                                shown = self.running.means()
                            elapsed = time.perf_counter() - session_start
                            remaining = (self.epochs - epoch + 1) * self.batches_per_epoch - self.batches_done
                            self.display.step(epoch=epoch, batch=self.batches_done, values=shown,
                                              images_per_s=session_batches * images_per_batch / elapsed,
                                              eta_s=remaining * elapsed / session_batches)
                        if self.batches_done >= self.batches_per_epoch:
                            break
                        # Under DDP the ranks agree on stopping at sync points only (a collective).
                        if (at_sync or not self.ctx.active) and all_agree(self.ctx, stop.requested, any_rank=True):
                            interrupted = True
                            break
                    if interrupted:
                        self._check_finite(epoch)
                        self._save(None)
                        break
                    seconds = time.perf_counter() - epoch_start
                    self._check_finite(epoch)
                    metrics = self._end_epoch(epoch, seconds, epoch_batches * images_per_batch, recon_weight)
                    session_metrics.append(metrics)
                    if epoch < self.epochs and all_agree(self.ctx, stop.requested, any_rank=True):
                        interrupted = True
                        break
        finally:
            if self.display is not None:
                self.display.close()
        return TrainResult(run_dir=self.plan.run_dir if self.ctx.is_main else None, epochs_done=self.epochs_done,
                           interrupted=interrupted, metrics=session_metrics, generator=self.generator)

    def _end_epoch(self, epoch: int, seconds: float, images: int, recon_weight: float) -> dict[str, Any]:
        means = self.running.means()
        self.epochs_done = epoch
        self.batches_done = 0
        self.running = _Running(self.device)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "batches": self.total_batches,
            "d_loss": means.get("d_loss"),
            "g_loss": means.get("g_loss"),
            "g_adv": means.get("g_adv"),
            "g_recon": means.get("g_recon"),
            "l1": means.get("l1"),
            "perceptual": means.get("perceptual"),
            "recon_weight": recon_weight,
            "perceptual_weight": self.plan.recipe.perceptual_weight,
            **{key: value for key, value in means.items()
               if key not in ("d_loss", "g_loss", "g_adv", "g_recon", "l1", "perceptual")},
            "images_per_s": images / max(seconds, 1e-9),
            "seconds": seconds,
        }
        self._sync_buffers()
        if self.ctx.is_main:
            metrics.update(self._validate())
            self._write_samples(epoch)
            self._append_metrics(metrics)
        self._save(metrics)
        barrier(self.ctx)
        if self.display is not None:
            self.display.epoch_end(metrics)
        return metrics


def _describe(generator: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in generator.items())
