"""The note's three training recipes as data: networks, loss strategies and numbers.

A recipe is everything that differs between `gan`, `wgan` and `progan`; the one training loop in
`recolor.train` reads it and never asks which recipe it runs. Command-line overrides produce a
changed copy of a recipe (`apply_overrides`), never a branch in the loop. `RECIPES` is the
registry the CLI builds its choices from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from recolor.errors import UsageError
from recolor.train.losses import (AdversarialLoss, ColorfulnessShortfall, GeneratorTerm, NeutralChromaPenalty,
                                  SoftLabelBCE, WassersteinGP)


@dataclass(frozen=True)
class Schedule:
    """A value that changes at epoch boundaries: ((first_epoch, value), ...), epochs counted from 1.

    `Schedule(((1, 70.0), (19, 10.0), (26, 30.0)))` is 70 for epochs 1-18, 10 for 19-25, 30 from 26 on.
    """

    phases: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        starts = [start for start, _ in self.phases]
        if not self.phases or starts[0] != 1 or starts != sorted(set(starts)):
            raise ValueError(f"a schedule starts at epoch 1 with increasing epochs, got {self.phases}")

    @classmethod
    def constant(cls, value: float) -> "Schedule":
        return cls(((1, float(value)),))

    @classmethod
    def parse(cls, text: str) -> "Schedule":
        """'1:70,19:10,26:30' -> Schedule; a single number is a constant schedule."""
        try:
            if ":" not in text:
                return cls.constant(float(text))
            phases = []
            for part in text.split(","):
                start, value = part.split(":")
                phases.append((int(start), float(value)))
            return cls(tuple(phases))
        except ValueError:
            raise UsageError(f"cannot read the schedule {text!r}",
                             "write FIRST_EPOCH:VALUE pairs starting at epoch 1, e.g. 1:70,19:10,26:30") from None

    def at(self, epoch: int) -> float:
        """The value in force during `epoch` (counted from 1)."""
        value = self.phases[0][1]
        for start, phase_value in self.phases:
            if epoch >= start:
                value = phase_value
        return value

    def scaled(self, factor: float) -> "Schedule":
        """The same phases with their lengths multiplied by `factor` (0.5: a 27-epoch plan in about 14).

        Phase starts move to 1 + (start - 1) · factor rounded half up; phases that collapse onto an
        earlier start are dropped, the later value winning.
        """
        if factor <= 0:
            raise UsageError(f"--schedule-scale must be positive, got {factor}", "use e.g. 0.5 to halve every phase")
        phases: dict[int, float] = {}
        for start, value in self.phases:
            phases[1 + math.floor((start - 1) * factor + 0.5)] = value
        return Schedule(tuple(sorted(phases.items())))

    def to_list(self) -> list[list[float]]:
        return [[start, value] for start, value in self.phases]


@dataclass(frozen=True)
class Recipe:
    """One way to train the colorizer. Numbers are the note's unless the field's comment says otherwise."""

    name: str
    summary: str
    generator: dict[str, Any]            # UNetGenerator kwargs except width (a run setting)
    discriminator: dict[str, Any]        # PatchDiscriminator kwargs except width
    adversarial: AdversarialLoss
    critic_steps: int                    # critic updates per generator update
    recon_weight: Schedule               # λ of the AB-rebalanced L1, by epoch
    perceptual_weight: float             # λ of the VGG-16 perceptual loss (0: not used)
    lr_g: float
    lr_d: float
    betas_g: tuple[float, float]
    betas_d: tuple[float, float]
    epochs: int                          # the note's training length
    perceptual_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")
    notes: tuple[str, ...] = field(default=())
    # Not in the note (issue #24), off in every recipe: a floor on the rebalancing weight of pixels
    # neutral in the ground truth (0: none), and extra generator terms, each with its own λ.
    neutral_weight_floor: float = 0.0
    extra_losses: tuple[GeneratorTerm, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Everything the recipe holds, as JSON-ready data (written into config.json)."""
        return {
            "name": self.name,
            "summary": self.summary,
            "generator": dict(self.generator),
            "discriminator": dict(self.discriminator),
            "adversarial": self.adversarial.to_dict(),
            "critic_steps": self.critic_steps,
            "recon_weight": self.recon_weight.to_list(),
            "perceptual_weight": self.perceptual_weight,
            "perceptual_layers": list(self.perceptual_layers),
            "lr_g": self.lr_g,
            "lr_d": self.lr_d,
            "betas_g": list(self.betas_g),
            "betas_d": list(self.betas_d),
            "epochs": self.epochs,
            "notes": list(self.notes),
            "neutral_weight_floor": self.neutral_weight_floor,
            "extra_losses": [term.to_dict() for term in self.extra_losses],
        }


# The pix2pix convention for Adam in conditional GANs; the note does not state its betas.
_PIX2PIX_BETAS = (0.5, 0.999)

GAN = Recipe(
    name="gan",
    summary="U-Net + PatchGAN, BCE with soft labels 0.8/0.2, AB-rebalanced L1 λ=70 (note §1.3, §3)",
    generator={"depth": 4, "norm": "batch"},
    discriminator={"layers": 4, "norm": "batch", "minibatch_std": False},
    adversarial=SoftLabelBCE(real_label=0.8, fake_label=0.2),
    critic_steps=1,
    recon_weight=Schedule.constant(70.0),
    perceptual_weight=0.0,
    lr_g=4e-4,
    lr_d=5e-5,
    betas_g=_PIX2PIX_BETAS,
    betas_d=_PIX2PIX_BETAS,
    epochs=27,
    notes=("Adam betas (0.5, 0.999) are the pix2pix convention; the note does not give them.",),
)

WGAN = Recipe(
    name="wgan",
    summary="WGAN-GP: InstanceNorm critic, Wasserstein loss + gradient penalty 10, 5 critic steps, "
            "L1 λ 70 → 10 → 30 (note §6, §7)",
    generator={"depth": 4, "norm": "batch"},
    discriminator={"layers": 4, "norm": "instance", "minibatch_std": False},
    adversarial=WassersteinGP(gp_weight=10.0),
    critic_steps=5,
    recon_weight=Schedule(((1, 70.0), (19, 10.0), (26, 30.0))),
    perceptual_weight=0.0,
    lr_g=4e-4,
    lr_d=5e-5,
    betas_g=(0.0, 0.9),
    betas_d=(0.0, 0.9),
    epochs=27,
    notes=("Learning rates: §7 lists what changed from the GAN and does not list them, so they stay 4e-4 / 5e-5.",
           "Adam betas (0.0, 0.9) as in Gulrajani et al. (WGAN-GP).",
           "One critic step per batch; the generator steps on every 5th batch."),
)

PROGAN = Recipe(
    name="progan",
    summary="ProGAN-stabilised U-Net: PixelNorm generator, minibatch-stddev PatchGAN, BCE soft labels, "
            "VGG-16 perceptual loss λ=100 + AB-rebalanced L1 λ=70 (note §9)",
    generator={"depth": 4, "norm": "pixel"},
    discriminator={"layers": 4, "norm": "batch", "minibatch_std": True},
    adversarial=SoftLabelBCE(real_label=0.8, fake_label=0.2),
    critic_steps=1,
    recon_weight=Schedule.constant(70.0),
    perceptual_weight=100.0,
    lr_g=4e-4,
    lr_d=5e-5,
    betas_g=_PIX2PIX_BETAS,
    betas_d=_PIX2PIX_BETAS,
    epochs=20,
    notes=("The rebalanced L1 (λ=70) stays: §9 'added to the pixel-wise error minimization' the VGG loss; "
           "eq. 7 omits it, which --recon-weight 0 reproduces.",),
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (GAN, WGAN, PROGAN)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}", f"choose one of {', '.join(RECIPES)}") from None


# Overrides a user may give, each mapped to the recipe field (or strategy field) it changes.
OVERRIDABLE = ("recon_weight", "recon_schedule", "schedule_scale", "perceptual_weight", "perceptual_layers",
               "lr_g", "lr_d", "d_layers", "critic_steps", "gp_weight", "soft_labels", "g_norm",
               "neutral_weight_floor", "neutral_chroma_weight", "colorfulness_weight")
G_NORMS = ("batch", "pixel")
# The extra generator terms an override switches on, by the override that gives their λ.
EXTRA_LOSSES: dict[str, type] = {"neutral_chroma_weight": NeutralChromaPenalty,
                                 "colorfulness_weight": ColorfulnessShortfall}


def apply_overrides(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """A copy of `recipe` with the given numbers changed; None values mean "keep the recipe's".

    recon_weight (a constant λ) and recon_schedule ('1:70,19:10,26:30') replace the L1 schedule;
    schedule_scale then stretches or shrinks its phases. gp_weight and soft_labels ((real, fake))
    change the adversarial strategy's numbers and are refused where the strategy has no such number.
    neutral_weight_floor sets the floor on neutral pixels' rebalancing weights; each key of
    EXTRA_LOSSES adds its term with that λ (0 removes it).
    """
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"unknown recipe overrides {sorted(unknown)}")
    given = {key: value for key, value in overrides.items() if value is not None}
    changes: dict[str, Any] = {}
    if "recon_weight" in given and "recon_schedule" in given:
        raise UsageError("--recon-weight and --recon-schedule both given", "give one of them")
    schedule = recipe.recon_weight
    if "recon_weight" in given:
        schedule = Schedule.constant(given["recon_weight"])
    if "recon_schedule" in given:
        schedule = Schedule.parse(given["recon_schedule"])
    if "schedule_scale" in given:
        schedule = schedule.scaled(given["schedule_scale"])
    changes["recon_weight"] = schedule
    for key in ("perceptual_weight", "lr_g", "lr_d", "critic_steps", "neutral_weight_floor"):
        if key in given:
            changes[key] = given[key]
    if "perceptual_layers" in given:
        from recolor.nn.perceptual import LAYERS

        # Checked against the backbone when training starts; here only against every backbone's names.
        known = {layer for names in LAYERS.values() for layer in names}
        layers = tuple(given["perceptual_layers"])
        unknown_layers = [layer for layer in layers if layer not in known]
        if not layers or unknown_layers:
            raise UsageError(f"unknown perceptual layers {unknown_layers or layers}",
                             f"choose among {', '.join(sorted(known))}")
        changes["perceptual_layers"] = layers
    if "g_norm" in given:
        if given["g_norm"] not in G_NORMS:
            raise UsageError(f"unknown --g-norm {given['g_norm']!r}", f"choose one of {', '.join(G_NORMS)}")
        changes["generator"] = {**recipe.generator, "norm": given["g_norm"]}
    if "d_layers" in given:
        changes["discriminator"] = {**recipe.discriminator, "layers": given["d_layers"]}
    adversarial = recipe.adversarial
    if "gp_weight" in given:
        if not hasattr(adversarial, "gp_weight"):
            raise UsageError(f"--gp-weight given, but recipe {recipe.name!r} has no gradient penalty",
                             "use it with wgan")
        adversarial = dataclasses.replace(adversarial, gp_weight=given["gp_weight"])
    if "soft_labels" in given:
        if not hasattr(adversarial, "real_label"):
            raise UsageError(f"--soft-labels given, but recipe {recipe.name!r} uses no labels",
                             "use it with gan or progan")
        real, fake = given["soft_labels"]
        adversarial = dataclasses.replace(adversarial, real_label=real, fake_label=fake)
    changes["adversarial"] = adversarial
    extra = list(recipe.extra_losses)
    for key, term in EXTRA_LOSSES.items():
        if key in given:
            if given[key] < 0:
                raise UsageError(f"--{key.replace('_', '-')} {given[key]} is negative", "use 0 or more")
            extra = [other for other in extra if not isinstance(other, term)]
            if given[key] > 0:
                extra.append(term(weight=float(given[key])))
    changes["extra_losses"] = tuple(extra)
    if given.get("neutral_weight_floor", 0) < 0:
        raise UsageError(f"--neutral-weight-floor {given['neutral_weight_floor']} is negative",
                         "use 0 (no floor) or a weight such as 1")
    return dataclasses.replace(recipe, **changes)
