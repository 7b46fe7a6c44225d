"""The three recipes hold the note's numbers, as data; overrides change data, not code paths."""

from __future__ import annotations

import json

import pytest
import torch

from recolor.errors import UsageError
from recolor.train.losses import SoftLabelBCE, WassersteinGP
from recolor.nn import PatchDiscriminator, PixelNorm, UNetGenerator
from recolor.train.recipes import RECIPES, Schedule, apply_overrides, get_recipe


def test_registry_holds_the_three_recipes():
    assert list(RECIPES) == ["gan", "wgan", "progan"]
    with pytest.raises(UsageError, match="gan, wgan, progan"):
        get_recipe("dcgan")


def test_gan_numbers_are_the_note_s():
    gan = RECIPES["gan"]
    assert isinstance(gan.adversarial, SoftLabelBCE)
    assert (gan.adversarial.real_label, gan.adversarial.fake_label) == (0.8, 0.2)
    assert (gan.lr_g, gan.lr_d) == (4e-4, 5e-5)
    assert gan.recon_weight.at(1) == gan.recon_weight.at(27) == 70
    assert gan.perceptual_weight == 0
    assert gan.critic_steps == 1
    assert gan.discriminator == {"layers": 4, "norm": "batch", "minibatch_std": False}
    assert gan.generator["norm"] == "batch"


def test_wgan_numbers_are_the_note_s():
    wgan = RECIPES["wgan"]
    assert isinstance(wgan.adversarial, WassersteinGP)
    assert wgan.adversarial.gp_weight == 10
    assert wgan.critic_steps == 5
    assert wgan.discriminator["norm"] == "instance"
    assert wgan.betas_d == (0.0, 0.9)
    # λ: 70 for epochs 1-18, 10 for 19-25, 30 from 26 (note §7.5).
    assert [wgan.recon_weight.at(e) for e in (1, 18, 19, 25, 26, 30)] == [70, 70, 10, 10, 30, 30]


def test_progan_numbers_are_the_note_s():
    progan = RECIPES["progan"]
    assert progan.generator["norm"] == "pixel"
    assert progan.discriminator["minibatch_std"] is True
    assert progan.perceptual_weight == 100
    assert progan.perceptual_layers == ("relu1_2", "relu2_2", "relu3_3")
    assert progan.recon_weight.at(1) == 70   # the stated extra: rebalanced L1 kept at 70
    assert progan.epochs == 20
    # The networks the recipe describes really use PixelNorm and minibatch stddev.
    generator = UNetGenerator(width=4, **progan.generator)
    critic = PatchDiscriminator(width=4, **progan.discriminator)
    assert any(isinstance(m, PixelNorm) for m in generator.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())
    # In eval mode (BatchNorm on running statistics) the only link between samples is the
    # minibatch-stddev channel: x's logits depend on whether its batch mate is a copy or not.
    critic.eval()
    x = torch.randn(1, 3, 32, 32)
    alone = critic(torch.cat([x, x]))[0]
    mixed = critic(torch.cat([x, torch.randn(1, 3, 32, 32)]))[0]
    assert not torch.allclose(alone, mixed)


def test_recipes_are_plain_data():
    for recipe in RECIPES.values():
        text = json.dumps(recipe.to_dict())
        assert json.loads(text)["name"] == recipe.name


def test_schedule_lookup_parse_and_scale():
    schedule = Schedule.parse("1:70,19:10,26:30")
    assert schedule == RECIPES["wgan"].recon_weight
    assert Schedule.parse("12.5") == Schedule.constant(12.5)
    assert schedule.at(100) == 30
    half = schedule.scaled(0.5)
    assert half.phases == ((1, 70.0), (10, 10.0), (14, 30.0))
    assert schedule.scaled(1.0) == schedule
    # Phases that collapse onto one epoch keep the later value.
    assert schedule.scaled(0.01).phases == ((1, 30.0),)
    with pytest.raises(UsageError):
        Schedule.parse("70,10")
    with pytest.raises(ValueError):
        Schedule(((2, 1.0),))


def test_overrides_change_numbers_and_only_where_they_exist():
    gan = RECIPES["gan"]
    changed = apply_overrides(gan, {"recon_weight": 10, "lr_g": 1e-3, "d_layers": 3, "soft_labels": (0.9, 0.1),
                                    "lr_d": None})
    assert changed.recon_weight.at(5) == 10
    assert changed.lr_g == 1e-3 and changed.lr_d == gan.lr_d
    assert changed.discriminator["layers"] == 3 and gan.discriminator["layers"] == 4
    assert (changed.adversarial.real_label, changed.adversarial.fake_label) == (0.9, 0.1)
    wgan = apply_overrides(RECIPES["wgan"], {"gp_weight": 5.0, "schedule_scale": 0.5})
    assert wgan.adversarial.gp_weight == 5.0
    assert wgan.recon_weight.at(10) == 10
    with pytest.raises(UsageError, match="no gradient penalty"):
        apply_overrides(gan, {"gp_weight": 5.0})
    with pytest.raises(UsageError, match="uses no labels"):
        apply_overrides(RECIPES["wgan"], {"soft_labels": (0.9, 0.1)})
    with pytest.raises(UsageError, match="both given"):
        apply_overrides(gan, {"recon_weight": 1.0, "recon_schedule": "1:2"})


def test_perceptual_layers_override_changes_only_the_recipe_data():
    from recolor.train.recipes import RECIPES, apply_overrides

    changed = apply_overrides(RECIPES["progan"], {"perceptual_layers": ["relu1_2", "relu2_2"]})
    assert changed.perceptual_layers == ("relu1_2", "relu2_2")
    assert RECIPES["progan"].perceptual_layers == ("relu1_2", "relu2_2", "relu3_3")
    with pytest.raises(UsageError, match="unknown perceptual layers"):
        apply_overrides(RECIPES["progan"], {"perceptual_layers": ["relu9_9"]})


def test_neutral_colour_options_add_terms_and_leave_every_recipe_s_defaults_alone():
    from recolor.train.losses import ColorfulnessShortfall, NeutralChromaPenalty

    for recipe in RECIPES.values():
        assert recipe.neutral_weight_floor == 0.0 and recipe.extra_losses == ()
    progan = RECIPES["progan"]
    changed = apply_overrides(progan, {"neutral_weight_floor": 2.0, "neutral_chroma_weight": 17.5,
                                       "colorfulness_weight": 0.5})
    assert changed.neutral_weight_floor == 2.0
    assert changed.extra_losses == (NeutralChromaPenalty(weight=17.5), ColorfulnessShortfall(weight=0.5))
    assert changed.to_dict()["extra_losses"] == [
        {"kind": "neutral_chroma", "weight": 17.5, "neutral_chroma": 5.0},
        {"kind": "colorfulness_shortfall", "weight": 0.5}]
    assert changed.perceptual_weight == progan.perceptual_weight and changed.recon_weight == progan.recon_weight
    # A later override replaces a term's λ; 0 removes the term.
    again = apply_overrides(changed, {"neutral_chroma_weight": 5.0, "colorfulness_weight": 0.0})
    assert again.extra_losses == (NeutralChromaPenalty(weight=5.0),)
    with pytest.raises(UsageError, match="negative"):
        apply_overrides(progan, {"neutral_weight_floor": -1.0})
    with pytest.raises(UsageError, match="negative"):
        apply_overrides(progan, {"colorfulness_weight": -1.0})
