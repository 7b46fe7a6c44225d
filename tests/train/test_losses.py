"""The recipes' losses, each against values worked out by hand, and the VGG feature extractor."""

from __future__ import annotations

import math
import socket
import time

import pytest
import torch
from torch import nn

from recolor.errors import NetworkUnavailableError
from recolor.train.losses import (
    ColorfulnessShortfall,
    NeutralChromaPenalty,
    SoftLabelBCE,
    WassersteinGP,
    colorfulness_shortfall,
    floor_neutral_weights,
    gradient_penalty,
    neutral_chroma_penalty,
    neutral_mask,
    perceptual_loss,
    rebalanced_l1,
    sample_scores,
    soft_label_bce,
)
from recolor.nn import MinibatchStdDev, PatchDiscriminator
from recolor.nn.vgg import VGGFeatures, build_backbone, perceptual_distance, weights_cache_path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _bce(p: float, target: float) -> float:
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def _constant_critic(value: float):
    return lambda lab: torch.full((lab.shape[0], 1, 2, 2), value)


# ---------------------------------------------------------------------------- soft labels (BCE)


def test_soft_label_bce_matches_the_formula():
    logits = torch.tensor([[[[0.3, -1.2]]]])
    expected = sum(_bce(1 / (1 + math.exp(-x)), 0.8) for x in (0.3, -1.2)) / 2
    assert soft_label_bce(logits, 0.8).item() == pytest.approx(expected, rel=1e-6)


def test_soft_labels_d_loss_is_the_mean_of_real_and_fake_terms():
    loss = SoftLabelBCE()
    assert (loss.real_label, loss.fake_label, loss.generator_target) == (0.8, 0.2, 1.0)
    real = torch.zeros(2, 3, 8, 8)
    fake = torch.zeros(2, 3, 8, 8)
    # A critic that outputs exactly the soft labels reaches the floor: the entropy H(0.8).
    critic = lambda lab: torch.full((lab.shape[0], 1, 2, 2), _logit(0.8) if lab is real else _logit(0.2))
    d_loss, parts = loss.d_loss(critic, real, fake)
    entropy = _bce(0.8, 0.8)
    assert d_loss.item() == pytest.approx(entropy, rel=1e-5)
    assert parts["d_real"].item() == pytest.approx(entropy, rel=1e-5)
    assert parts["d_fake"].item() == pytest.approx(_bce(0.2, 0.2), rel=1e-5)
    # A critic that cannot tell (p = 0.5 everywhere) gives ln 2, the note's "0.6-0.7" regime.
    d_loss, _ = loss.d_loss(_constant_critic(0.0), real, fake)
    assert d_loss.item() == pytest.approx(math.log(2), rel=1e-6)


def test_soft_labels_generator_aims_at_one():
    fake = torch.zeros(3, 3, 8, 8)
    g = SoftLabelBCE().g_loss(_constant_critic(_logit(0.7)), fake)
    assert g.item() == pytest.approx(-math.log(0.7), rel=1e-5)


# ---------------------------------------------------------------------------- Wasserstein + GP


class LinearCritic(nn.Module):
    """C(x) = patch map whose mean is Σ w · x / (H W): its input gradient is w / (H W) everywhere."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(weight.view(1, 3, 1, 1))

    def forward(self, x):
        return self.conv(x)


def test_gradient_penalty_of_a_linear_critic_by_hand():
    h = w = 4
    weight = torch.tensor([3.0, 4.0, 12.0])  # |w| = 13
    critic = LinearCritic(weight)
    real = torch.randn(5, 3, h, w)
    fake = torch.randn(5, 3, h, w)
    # Score = mean over the H·W patches of w·x(p): d score / d x(p) = w / (H W) at each of H W pixels,
    # so the gradient norm is |w| · sqrt(H W) / (H W) = 13 / 4, the same for every x̂.
    norm = 13 * math.sqrt(h * w) / (h * w)
    expected = 10 * (norm - 1) ** 2
    penalty = gradient_penalty(critic, real, fake, 10.0)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    # ... and the penalty trains the critic: its gradient w.r.t. the critic's weights is that of
    # 10 (|w| s - 1)^2 with s = sqrt(HW)/(HW), i.e. 20 (|w| s - 1) s w / |w|.
    penalty.backward()
    s = math.sqrt(h * w) / (h * w)
    expected_grad = 20 * (13 * s - 1) * s * weight / 13
    assert torch.allclose(critic.conv.weight.grad.view(3), expected_grad, rtol=1e-4)


def test_gradient_penalty_is_zero_for_a_unit_gradient_and_uses_alpha():
    h = w = 2
    # |w| = sqrt(HW) = 2 makes the gradient norm exactly 1.
    critic = LinearCritic(torch.tensor([2.0, 0.0, 0.0]))
    real = torch.randn(3, 3, h, w)
    fake = torch.randn(3, 3, h, w)
    assert gradient_penalty(critic, real, fake, 10.0).item() == pytest.approx(0.0, abs=1e-10)

    # A quadratic critic: score = Σ x² / 2, gradient x̂ itself, so the norm tells where x̂ sits.
    quadratic = lambda x: (x.square().sum(dim=(1, 2, 3)) / 2).view(-1, 1, 1, 1)
    real = torch.zeros(1, 3, h, w)
    fake = torch.full((1, 3, h, w), 0.5)     # |fake| = 0.5 * sqrt(12)
    alpha = torch.tensor([0.25])            # x̂ = 0.75 fake
    expected = 1.0 * (0.75 * 0.5 * math.sqrt(12) - 1) ** 2
    assert gradient_penalty(quadratic, real, fake, 1.0, alpha=alpha).item() == pytest.approx(expected, rel=1e-6)


def test_wasserstein_losses_have_the_note_signs():
    loss = WassersteinGP(gp_weight=0.0)
    real = torch.ones(2, 3, 4, 4)
    fake = torch.zeros(2, 3, 4, 4)
    critic = lambda lab: lab.mean(dim=1, keepdim=True) * 5   # scores: 5 on real, 0 on fake
    d_loss, parts = loss.d_loss(critic, real, fake)
    assert d_loss.item() == pytest.approx(0 - 5)              # E[C(fake)] - E[C(real)]
    assert parts["wasserstein"].item() == pytest.approx(5)
    assert loss.g_loss(lambda lab: torch.full((2, 1, 2, 2), 3.0), fake).item() == pytest.approx(-3)
    # With the penalty on, the loss adds gp_weight times the penalty of the same critic.
    critic_net = LinearCritic(torch.tensor([1.0, 1.0, 1.0]))
    d_loss, parts = WassersteinGP(gp_weight=10.0).d_loss(critic_net, real, fake)
    norm = math.sqrt(3) * 4 / 16
    assert parts["gp"].item() == pytest.approx(10 * (norm - 1) ** 2, rel=1e-5)


def test_gradient_penalty_through_a_patch_discriminator_under_autocast():
    torch.manual_seed(0)
    critic = PatchDiscriminator(width=4, layers=3, norm="instance")
    real = torch.randn(2, 3, 32, 32)
    fake = torch.randn(2, 3, 32, 32)
    alpha = torch.tensor([0.3, 0.6])
    reference = gradient_penalty(critic, real, fake, 10.0, alpha=alpha)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = gradient_penalty(critic, real, fake, 10.0, alpha=alpha)
    # The penalty runs in float32 even inside autocast: the same number.
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(reference.item(), rel=1e-5)
    under_autocast.backward()
    # Every conv weight gets a finite gradient from the penalty (biases may get none: an input
    # gradient does not depend on them differentiably).
    conv_weights = [m.weight for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0 for w in conv_weights)


def test_sample_scores_average_the_patch_map():
    patches = torch.arange(8.0).view(2, 1, 2, 2)
    assert sample_scores(patches).tolist() == [1.5, 5.5]


# ---------------------------------------------------------------------------- rebalanced L1


def test_rebalanced_l1_weights_each_pixel():
    pred = torch.zeros(1, 2, 1, 2)
    true = torch.tensor([[[[0.1, 0.2]], [[0.3, -0.4]]]])   # |Δ| per pixel: (0.1 + 0.3), (0.2 + 0.4)
    weights = torch.tensor([[[[5.0, 0.5]]]])
    expected = (5.0 * (0.1 + 0.3) + 0.5 * (0.2 + 0.4)) / 4    # mean over 2 pixels x 2 channels
    assert rebalanced_l1(pred, true, weights).item() == pytest.approx(expected, rel=1e-6)
    ones = torch.ones_like(weights)
    assert rebalanced_l1(pred, true, ones).item() == pytest.approx(torch.nn.functional.l1_loss(pred, true).item())


# ---------------------------------------------------------------------------- minibatch stddev


def test_minibatch_stddev_appends_the_batch_spread():
    layer = MinibatchStdDev()
    x = torch.stack([torch.zeros(2, 3, 3), torch.full((2, 3, 3), 2.0)])   # per-feature std over batch: 1
    out = layer(x)
    assert out.shape == (2, 3, 3, 3)
    assert torch.allclose(out[:, 2], torch.ones(2, 3, 3), atol=1e-6)
    assert torch.equal(out[:, :2], x)
    # A collapsed batch (identical samples) shows zero spread: what the progan critic sees.
    same = torch.ones(4, 2, 3, 3)
    assert layer(same)[:, 2].abs().max().item() < 1e-3


# ---------------------------------------------------------------------------- VGG features, perceptual


@pytest.fixture(scope="module")
def random_vgg():
    return build_backbone("vgg16-random", ("relu1_2", "relu2_2"))


def test_random_vgg_is_fixed_and_frozen(random_vgg):
    again = VGGFeatures(pretrained=False, layers=("relu1_2", "relu2_2"))
    for a, b in zip(random_vgg.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in random_vgg.parameters())
    random_vgg.train()
    assert not random_vgg.training


def test_perceptual_distance_is_the_note_equation(random_vgg):
    torch.manual_seed(1)
    a = torch.rand(3, 3, 16, 16)
    b = torch.rand(3, 3, 16, 16)
    distance = perceptual_distance(a, b, random_vgg)
    fa, fb = random_vgg(a), random_vgg(b)
    by_hand = sum(((x - y) ** 2).mean(dim=(1, 2, 3)) for x, y in zip(fa, fb))
    assert distance.shape == (3,)
    assert torch.allclose(distance, by_hand, rtol=1e-5)
    assert torch.allclose(perceptual_distance(a, a, random_vgg), torch.zeros(3), atol=1e-6)
    assert [f.shape[1] for f in fa] == [64, 128]


def test_perceptual_loss_reaches_ab_through_lab_to_rgb(random_vgg):
    torch.manual_seed(2)
    l_norm = torch.rand(2, 1, 16, 16) * 1.2 - 0.6
    ab_true = torch.rand(2, 2, 16, 16) * 0.4 - 0.2
    ab_pred = torch.zeros(2, 2, 16, 16, requires_grad=True)
    loss = perceptual_loss(l_norm, ab_pred, ab_true, random_vgg)
    loss.backward()
    assert loss.item() > 0
    assert ab_pred.grad.abs().sum().item() > 0
    assert perceptual_loss(l_norm, ab_true, ab_true, random_vgg).item() == pytest.approx(0.0, abs=1e-6)


def test_pretrained_vgg_fails_fast_without_network(monkeypatch):
    # A proxy on a closed local port: urllib's real download code fails at once, with or without internet.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with pytest.raises(NetworkUnavailableError) as caught:
        VGGFeatures(pretrained=True)
    assert time.perf_counter() - started < 10
    assert "download.pytorch.org" in caught.value.cause
    assert str(weights_cache_path()) in caught.value.fix
    assert "vgg16-random" in caught.value.fix


def test_pretrained_vgg_fails_fast_when_dns_fails(monkeypatch):
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(NetworkUnavailableError, match="cannot resolve download.pytorch.org"):
        build_backbone("vgg16")


def test_pretrained_vgg_loads_weights_from_the_torch_hub_cache():
    # torchvision reads a file already in its cache without downloading (the hash is checked on
    # download only). A stand-in with the first block's tensors shows the weights are the file's.
    source = VGGFeatures(pretrained=False, layers=("relu1_2",), seed=7)
    state = {f"features.{key}": value for key, value in source.features.state_dict().items()}
    path = weights_cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    loaded = VGGFeatures(pretrained=True, layers=("relu1_2",))
    for a, b in zip(loaded.parameters(), source.parameters()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------- colour on neutral pixels (#24)


def _ab(*pairs_in_ab_units) -> torch.Tensor:
    """ab (1, 2, 1, P) in network units from (a, b) pairs in ab units."""
    return torch.tensor(pairs_in_ab_units, dtype=torch.float32).T.reshape(1, 2, 1, -1) / 110


def test_neutral_mask_is_eval_s_neutral_chroma():
    # chroma 0, 4.9 (3, 3.87), 5.0 (3, 4), 20: only the first two are neutral (chroma < 5)
    assert neutral_mask(_ab((0, 0), (3, 3.87), (3, 4), (-20, 0))).flatten().tolist() == [True, True, False, False]


def test_floor_raises_only_neutral_pixels_below_it():
    ab_true = _ab((0, 0), (1, -2), (30, 0), (0, 12))
    weights = torch.tensor([0.5, 3.0, 0.5, 0.5]).view(1, 1, 1, 4)
    floored = floor_neutral_weights(weights, ab_true, 2.0)
    assert floored.flatten().tolist() == [2.0, 3.0, 0.5, 0.5]   # a neutral weight above the floor stays
    assert torch.equal(floor_neutral_weights(weights, ab_true, 0.0), weights)
    # Through the L1: a wrong colour on the gray pixel now costs four times as much.
    ab_pred = _ab((30, 0), (1, -2), (30, 0), (0, 12))
    assert rebalanced_l1(ab_pred, ab_true, floored).item() == pytest.approx(
        4 * rebalanced_l1(ab_pred, ab_true, weights).item(), rel=1e-6)


def test_neutral_chroma_penalty_is_zero_for_gray_on_gray_and_grows_with_chroma_there():
    ab_true = _ab((0, 0), (2, 2), (40, 10))
    gray = _ab((0, 0), (0, 0), (40, 10))
    assert neutral_chroma_penalty(gray, ab_true).item() == pytest.approx(0.0, abs=1e-7)
    # Colour where the truth is colourful costs nothing; where it is gray, its chroma (ab/110) over all pixels.
    tinted = _ab((0, 0), (0, 0), (-60, 60))
    assert neutral_chroma_penalty(tinted, ab_true).item() == pytest.approx(0.0, abs=1e-7)
    painted = _ab((30, 40), (0, 0), (40, 10))
    assert neutral_chroma_penalty(painted, ab_true).item() == pytest.approx(50 / 110 / 3, abs=1e-3)
    brighter = _ab((60, 80), (0, 0), (40, 10))
    assert neutral_chroma_penalty(brighter, ab_true) > neutral_chroma_penalty(painted, ab_true)


def test_neutral_chroma_penalty_has_a_finite_gradient_at_gray_that_points_to_gray():
    ab_true = _ab((0, 0), (0, 0))
    ab_pred = _ab((0, 0), (20, -10)).requires_grad_(True)
    neutral_chroma_penalty(ab_pred, ab_true).backward()
    gradient = ab_pred.grad.flatten(2)[0]
    assert torch.isfinite(gradient).all()
    assert gradient[:, 0].abs().max() == 0          # already gray: no push
    assert gradient[0, 1] > 0 and gradient[1, 1] < 0   # a descent step moves (20, -10) towards 0


def _photo(saturation: float) -> torch.Tensor:
    """A 2 x 2 photo: red and blue halves around mid gray, `saturation` 0 (gray) to 1."""
    base = torch.full((1, 3, 2, 2), 0.5)
    base[0, :, :, 0] += saturation * torch.tensor([0.4, -0.2, -0.2]).view(3, 1)
    base[0, :, :, 1] += saturation * torch.tensor([-0.2, -0.2, 0.4]).view(3, 1)
    return base


def test_colorfulness_shortfall_is_a_hinge_towards_the_truth_s_colorfulness():
    from recolor.eval.metrics import colorfulness

    truth = _photo(0.6)
    assert colorfulness_shortfall(truth, truth).item() == pytest.approx(0.0, abs=1e-5)
    assert colorfulness_shortfall(_photo(1.0), truth).item() == 0.0   # more colourful than the truth: no push
    dull = _photo(0.3)
    expected = (colorfulness(truth) - colorfulness(dull)).item() / 255
    assert colorfulness_shortfall(dull, truth).item() == pytest.approx(expected, rel=1e-3)
    assert colorfulness_shortfall(_photo(0.0), truth) > colorfulness_shortfall(dull, truth) > 0
    # A gray truth asks for no colour, whatever the prediction.
    assert colorfulness_shortfall(_photo(0.0), _photo(0.0)).item() == pytest.approx(0.0, abs=1e-5)


def test_colorfulness_shortfall_pushes_a_dull_prediction_towards_colour():
    pred = _photo(0.05).requires_grad_(True)
    colorfulness_shortfall(pred, _photo(0.6)).backward()
    stepped = (pred - 0.5 * pred.grad).detach()
    assert colorfulness_shortfall(stepped, _photo(0.6)) < colorfulness_shortfall(pred.detach(), _photo(0.6))
    # An exactly gray output is a stationary point (the colourfulness is a norm, flat there on
    # average); the gradient stays finite rather than NaN.
    gray = _photo(0.0).requires_grad_(True)
    colorfulness_shortfall(gray, _photo(0.6)).backward()
    assert torch.isfinite(gray.grad).all()


def test_extra_terms_take_lab_in_network_units():
    l_norm = torch.zeros(1, 1, 1, 2)
    ab_true = _ab((0, 0), (0, 0))
    ab_pred = _ab((30, 40), (0, 0))
    penalty = NeutralChromaPenalty(weight=3.0)
    assert penalty(l_norm, ab_pred, ab_true).item() == pytest.approx(50 / 110 / 2, abs=1e-3)
    assert penalty.to_dict() == {"kind": "neutral_chroma", "weight": 3.0, "neutral_chroma": 5.0}
    shortfall = ColorfulnessShortfall(weight=0.5)
    assert shortfall(l_norm, ab_true, ab_pred).item() > 0   # the gray output of a coloured truth falls short
    assert shortfall(l_norm, ab_pred, ab_true).item() == 0.0
