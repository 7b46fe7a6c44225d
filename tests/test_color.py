import numpy as np
import pytest
import torch
from skimage.color import lab2rgb, rgb2lab

from recolor.color import (
    AB_SCALE,
    denormalize_ab,
    denormalize_l,
    lab_to_rgb,
    network_to_rgb,
    normalize_ab,
    normalize_l,
    rgb_to_lab,
    rgb_to_network,
)


def _test_colors() -> np.ndarray:
    """Random colors plus the extremes: the cube corners, near-black and the linear-segment knee."""
    rng = np.random.default_rng(0)
    random = rng.random((4096, 3))
    corners = np.array([[r, g, b] for r in (0, 1) for g in (0, 1) for b in (0, 1)], dtype=float)
    near_black = np.array([[1e-4, 0, 0], [0.04045, 0.04045, 0.04045], [0.04, 0.05, 0.003], [0.002, 0.001, 0.0]])
    return np.concatenate([random, corners, near_black])


def _as_batch(colors: np.ndarray) -> torch.Tensor:
    # (K, 3) -> (1, 3, K, 1)
    return torch.from_numpy(colors.T.copy()).float().view(1, 3, -1, 1)


def test_rgb_to_lab_matches_scikit_image():
    colors = _test_colors()
    ours = rgb_to_lab(_as_batch(colors)).view(3, -1).T.numpy()
    reference = rgb2lab(colors[None])[0]
    assert np.abs(ours - reference).max() < 0.05


def test_lab_to_rgb_matches_scikit_image():
    lab = rgb2lab(_test_colors()[None])[0]
    ours = lab_to_rgb(_as_batch(lab)).view(3, -1).T.numpy()
    reference = lab2rgb(lab[None])[0]
    assert np.abs(ours - reference).max() < 2e-3


def test_round_trip_is_exact_enough():
    rgb = torch.rand(2, 3, 16, 16)
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 2e-3


def test_lab_ranges_on_primaries():
    lab = rgb_to_lab(_as_batch(np.eye(3)))
    white = rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0]), atol=0.01)
    assert lab[:, 1:].abs().max() < AB_SCALE


def test_gradcheck_float64():
    rgb = (torch.rand(1, 3, 3, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))
    lab = rgb_to_lab(rgb.detach()).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: lab_to_rgb(x, clamp=False), (lab,))


def test_gradient_is_finite_at_black():
    rgb = torch.zeros(1, 3, 2, 2, requires_grad=True)
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()


def test_under_bf16_autocast_result_stays_float32_and_accurate():
    rgb = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lab = rgb_to_lab(rgb.bfloat16())
    assert lab.dtype == torch.float32
    reference = rgb_to_lab(rgb.bfloat16().float())
    assert (lab - reference).abs().max() < 1e-4


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        rgb_to_lab(torch.rand(3, 8, 8))


def test_normalisation_inverts_and_spans_unit_range():
    lightness = torch.tensor([0.0, 50.0, 100.0])
    assert torch.allclose(normalize_l(lightness), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(denormalize_l(normalize_l(lightness)), lightness)
    ab = torch.tensor([-110.0, 0.0, 55.0])
    assert torch.allclose(normalize_ab(ab), torch.tensor([-1.0, 0.0, 0.5]))
    assert torch.allclose(denormalize_ab(normalize_ab(ab)), ab)


def test_network_round_trip():
    rgb = torch.rand(2, 3, 8, 8)
    l_norm, ab_norm = rgb_to_network(rgb)
    assert l_norm.shape == (2, 1, 8, 8) and ab_norm.shape == (2, 2, 8, 8)
    assert l_norm.min() >= -1 and l_norm.max() <= 1 and ab_norm.abs().max() <= 1
    assert (network_to_rgb(l_norm, ab_norm) - rgb).abs().max() < 2e-3
