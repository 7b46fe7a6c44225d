"""The losses of the three recipes: adversarial strategies, the gradient penalty, rebalanced L1, perceptual.

The training loop never asks which recipe it runs: it calls `recipe.adversarial.d_loss(...)` and
`recipe.adversarial.g_loss(...)` on whichever strategy the recipe holds (STYLE principle 2). The
math lives in small pure functions a test can call alone.

Conventions: a critic (discriminator) maps a Lab batch (N, 3, H, W) in network units to a patch
map of scores (N, 1, h, w); a sample's score is the mean of its patch map. ab in network units is
ab / 110 in [-1, 1]. "Neutral" is `recolor eval`'s word: ground-truth chroma below
`recolor.eval.metrics.NEUTRAL_CHROMA` (5 ab units), the pixels its `spurious` figure watches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol

import torch
import torch.nn.functional as F

from recolor.color import network_to_rgb
from recolor.colorspace import AB_SCALE
from recolor.eval.metrics import NEUTRAL_CHROMA, colorfulness
from recolor.nn.vgg import VGGFeatures, perceptual_distance

Critic = Callable[[torch.Tensor], torch.Tensor]


def soft_label_bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against a constant (soft) label in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target, dtype=torch.float32))


def sample_scores(patch_scores: torch.Tensor) -> torch.Tensor:
    """Patch map (N, 1, h, w) -> one score per sample (N,): the mean over the patches."""
    return patch_scores.float().flatten(1).mean(dim=1)


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, weight: float, *,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP penalty (note eq. 4): weight · mean over samples of (‖∇ₓ̂ C(x̂)‖₂ − 1)².

    x̂ = alpha · real + (1 − alpha) · fake with alpha ~ U[0, 1) per sample (or given, shape (N,)).
    C(x̂) is the sample score (mean of the patch map); the norm is over all of a sample's input
    values. Computed in float32 with autocast off: the gradient of a gradient loses too much in
    16 bits, and keeping it out of fp16 also keeps it out of the gradient scaler's way. The result
    keeps its graph (create_graph), so its backward trains the critic.
    """
    real = real.detach().float()
    fake = fake.detach().float()
    if alpha is None:
        alpha = torch.rand(real.shape[0], device=real.device)
    alpha = alpha.to(device=real.device, dtype=real.dtype).view(-1, *([1] * (real.ndim - 1)))
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = sample_scores(critic(mixed))
        (gradient,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = gradient.flatten(1).norm(2, dim=1)
    return weight * (norms - 1).square().mean()


class AdversarialLoss(Protocol):
    """How the critic is trained and how it pushes the generator. Losses are scalar tensors."""

    name: ClassVar[str]

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, *,
               eager_critic: Critic | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Critic loss on a real and a fake Lab batch (fake already detached), with named parts to log.

        `eager_critic` is the same network without torch.compile / DDP wrappers, for double backward.
        """
        ...

    def g_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        """Adversarial part of the generator loss on a fake Lab batch."""
        ...

    def to_dict(self) -> dict:
        ...


@dataclass(frozen=True)
class SoftLabelBCE:
    """BCE with logits and soft labels (note §1.3.2): the critic aims at 0.8 on real, 0.2 on fake.

    The D loss is the mean of the real and the fake terms, so its floor is the label entropy
    H(0.8) = 0.500, and it sits near 0.69 when D cannot tell (the note's 0.6-0.7). The generator
    aims its fakes at `generator_target` (1.0, the note's eq. 7: L_BCE(D(L, âb), 1)).
    """

    name: ClassVar[str] = "bce-soft-labels"
    real_label: float = 0.8
    fake_label: float = 0.2
    generator_target: float = 1.0

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, *,
               eager_critic: Critic | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss_real = soft_label_bce(critic(real), self.real_label)
        loss_fake = soft_label_bce(critic(fake), self.fake_label)
        loss = 0.5 * (loss_real + loss_fake)
        return loss, {"d_real": loss_real.detach(), "d_fake": loss_fake.detach()}

    def g_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        return soft_label_bce(critic(fake), self.generator_target)

    def to_dict(self) -> dict:
        return {"kind": self.name, "real_label": self.real_label, "fake_label": self.fake_label,
                "generator_target": self.generator_target}


@dataclass(frozen=True)
class WassersteinGP:
    """Wasserstein critic with gradient penalty (note §6, §7.2-7.3).

    Critic loss E[C(fake)] − E[C(real)] + gp_weight · GP; generator loss −E[C(fake)].
    """

    name: ClassVar[str] = "wasserstein-gp"
    gp_weight: float = 10.0

    def d_loss(self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, *,
               eager_critic: Critic | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        score_real = sample_scores(critic(real)).mean()
        score_fake = sample_scores(critic(fake)).mean()
        penalty = gradient_penalty(eager_critic or critic, real, fake, self.gp_weight)
        loss = score_fake - score_real + penalty
        return loss, {"wasserstein": (score_real - score_fake).detach(), "gp": penalty.detach()}

    def g_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        return -sample_scores(critic(fake)).mean()

    def to_dict(self) -> dict:
        return {"kind": self.name, "gp_weight": self.gp_weight}


def rebalanced_l1(ab_pred: torch.Tensor, ab_true: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """AB-rebalanced L1 (note §1.3.3): mean over pixels and both channels of w · |ab_pred − ab_true|.

    ab in network units (N, 2, H, W); `weights` (N, 1, H, W) are the per-pixel rebalancing weights
    looked up from the ground-truth ab (in [0.5, 5] for prepared data, all 1 for plain L1). The mean
    over channels follows torch's L1 convention, i.e. half the note's |Δa| + |Δb| sum.
    """
    return (weights.float() * (ab_pred.float() - ab_true.float()).abs()).mean()


def perceptual_loss(l_norm: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor,
                    features: VGGFeatures) -> torch.Tensor:
    """VGG perceptual loss on RGB (note eq. 6): batch mean of the per-image perceptual distance.

    The predicted and true Lab images (same L) are turned into sRGB in [0, 1] first; the Lab -> RGB
    step runs in float32 and passes gradients back to ab_pred.
    """
    rgb_pred = network_to_rgb(l_norm, ab_pred)
    with torch.no_grad():
        rgb_true = network_to_rgb(l_norm, ab_true)
    return perceptual_distance(rgb_pred, rgb_true, features).mean()


# ------------------------------------------------------------------------ colour on neutral pixels
# Three candidates against spurious colour (issue #24), none in the note and none in a recipe's
# defaults: `recolor train --neutral-weight-floor / --neutral-chroma-weight / --colorfulness-weight`.

# Under the square root of a chroma: its derivative at a = b = 0 would be 0 / 0. 1e-3 network units
# is 0.11 ab units, far below anything visible.
_CHROMA_EPS = 1e-3
# Under the square roots of the colorfulness, in (0..255)² units: finite gradients on gray images.
_COLORFULNESS_EPS = 1e-6


def neutral_mask(ab_true: torch.Tensor, *, neutral: float = NEUTRAL_CHROMA) -> torch.Tensor:
    """Pixels whose ground truth is neutral: chroma below `neutral` ab units.

    ab_true (N, 2, H, W) in network units -> bool (N, 1, H, W). The same threshold as eval's spurious figure.
    """
    ab = ab_true.float() * AB_SCALE
    return torch.hypot(ab[:, 0:1], ab[:, 1:2]) < neutral


def floor_neutral_weights(weights: torch.Tensor, ab_true: torch.Tensor, floor: float, *,
                          neutral: float = NEUTRAL_CHROMA) -> torch.Tensor:
    """Rebalancing weights (N, 1, H, W) with those of ground-truth-neutral pixels raised to `floor`.

    The AB rebalancing gives the commonest colours, grays above all, the lowest weights (0.5 at the
    floor of the note's clamp), so a wrong colour on a white shirt costs the rebalanced L1 less than
    a wrong colour anywhere else. The floor acts per pixel on the exact ground-truth chroma, not on
    whole ab bins: the bins are 6.7 ab units wide, so the gray bin and its eight neighbours would
    reach chroma 14, far past what eval counts as neutral. Weights above `floor` are kept; a floor
    of 0 (or any floor at or below the smallest weight) changes nothing.
    """
    if floor <= 0:
        return weights
    return torch.where(neutral_mask(ab_true, neutral=neutral), weights.clamp(min=floor), weights)


def neutral_chroma_penalty(ab_pred: torch.Tensor, ab_true: torch.Tensor, *,
                           neutral: float = NEUTRAL_CHROMA) -> torch.Tensor:
    """Predicted chroma where the ground truth is neutral: mean over all pixels of mask · |ab_pred|.

    ab in network units (N, 2, H, W); the chroma is sqrt(a² + b²) in network units (ab / 110), 0 on
    pixels that are not neutral in the ground truth. The mean over all pixels (not only the neutral
    ones) puts it on the rebalanced L1's scale: on a neutral pixel whose truth is 0, λ · chroma
    adds between λ·√2/λ_L1 and 2λ/λ_L1 to its rebalancing weight (along a diagonal, along an axis),
    so λ 17.5 beside λ_L1 70 adds 0.35-0.5. It pulls towards gray, not towards the truth's small
    tint, and is 0 for a gray prediction.
    """
    mask = neutral_mask(ab_true, neutral=neutral)
    pred = ab_pred.float()
    chroma = torch.sqrt(pred[:, 0:1].square() + pred[:, 1:2].square() + _CHROMA_EPS**2) - _CHROMA_EPS
    return (chroma * mask).mean()


def colorfulness_shortfall(rgb_pred: torch.Tensor, rgb_true: torch.Tensor) -> torch.Tensor:
    """How much less colourful the prediction is than the truth: mean over images of
    max(0, CF(true) − CF(pred)) / 255, CF the Hasler-Süsstrunk colourfulness of `recolor eval`.

    sRGB batches (N, 3, H, W) in [0, 1]. DDColor's colourfulness loss (Kang et al., ICCV 2023,
    "DDColor: Towards Photo-Realistic Image Colorization via Dual Decoders"; `ColorfulnessLoss` in
    github.com/piddnad/DDColor basicsr/losses/losses.py, weight 0.5) is 1 − CF(pred) on RGB in
    [0, 1] (their CF a variant on |R − G| and |(R + G)/2 − B|), summed over the batch: it pushes for
    colour without bound, on a gray sky as on a parrot. This is that loss as a hinge towards each
    photo's own colourfulness, in the same units (CF on [0, 1], i.e. eval's CF / 255), averaged
    over the batch (λ 8 at batch 16 gives each photo DDColor's push of 0.5):
    it pushes only where the output is duller than the truth and stops there, so a photo that is
    nearly gray in truth (a white sky, a sepia print: most of the spurious colour, docs/results.md)
    adds nothing. The truth carries no gradient. An exactly gray output gets a zero gradient (the
    colourfulness is norm-like there); a generator's outputs are never exactly gray.
    """
    cf_pred = colorfulness(rgb_pred, eps=_COLORFULNESS_EPS)
    with torch.no_grad():
        cf_true = colorfulness(rgb_true)
    return ((cf_true - cf_pred).clamp(min=0) / 255).mean()


class GeneratorTerm(Protocol):
    """An extra term of the generator loss: the loop adds `weight · term(...)` to the reconstruction
    loss and logs the unweighted value under `name` in metrics.jsonl."""

    name: ClassVar[str]
    weight: float

    def __call__(self, l_norm: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> torch.Tensor:
        """Scalar loss from L (N, 1, H, W) and ab (N, 2, H, W), all in network units."""
        ...

    def to_dict(self) -> dict:
        ...


@dataclass(frozen=True)
class NeutralChromaPenalty:
    """`neutral_chroma_penalty`, weighted (`--neutral-chroma-weight`)."""

    name: ClassVar[str] = "neutral_chroma"
    weight: float
    neutral: float = NEUTRAL_CHROMA

    def __call__(self, l_norm: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> torch.Tensor:
        return neutral_chroma_penalty(ab_pred, ab_true, neutral=self.neutral)

    def to_dict(self) -> dict:
        return {"kind": self.name, "weight": self.weight, "neutral_chroma": self.neutral}


@dataclass(frozen=True)
class ColorfulnessShortfall:
    """`colorfulness_shortfall` on the sRGB of the prediction and of the truth, weighted (`--colorfulness-weight`)."""

    name: ClassVar[str] = "colorfulness_shortfall"
    weight: float

    def __call__(self, l_norm: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> torch.Tensor:
        rgb_pred = network_to_rgb(l_norm, ab_pred)
        with torch.no_grad():
            rgb_true = network_to_rgb(l_norm, ab_true)
        return colorfulness_shortfall(rgb_pred, rgb_true)

    def to_dict(self) -> dict:
        return {"kind": self.name, "weight": self.weight}
