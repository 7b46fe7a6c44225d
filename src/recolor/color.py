"""Batched sRGB <-> CIE Lab (D65) in torch, and the normalisation of L and ab for the networks.

Conversions run on whatever device the tensors live on, so the training loop converts whole
batches on the GPU instead of per image in data-loader workers. They always compute in float32
(or float64 when given float64), also under autocast: Lab's cube root and sRGB's power curve lose
too much in bf16. scikit-image's `rgb2lab` / `lab2rgb` are the reference the tests compare against.
"""

from __future__ import annotations

import torch

from recolor.colorspace import AB_SCALE, D65_WHITE, L_MAX, LAB_EPSILON, LAB_KAPPA, RGB_TO_XYZ


def _matrix(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    # The power branch is evaluated on clamped input so its gradient stays finite below the knee.
    high = ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > 0.04045, high, rgb / 12.92)


def _linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    high = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(linear > 0.0031308, high, linear * 12.92)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    cube_root = t.clamp(min=LAB_EPSILON) ** (1 / 3)
    return torch.where(t > LAB_EPSILON, cube_root, (LAB_KAPPA * t + 16) / 116)


def _lab_f_inverse(f: torch.Tensor) -> torch.Tensor:
    cube = f**3
    return torch.where(cube > LAB_EPSILON, cube, (116 * f - 16) / LAB_KAPPA)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], shape (N, 3, H, W) -> Lab with L in [0, 100], a and b in about [-110, 110]."""
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb_to_lab expects (N, 3, H, W), got {tuple(rgb.shape)}")
    with torch.autocast(device_type=rgb.device.type, enabled=False):
        rgb = rgb.to(_compute_dtype(rgb))
        linear = _srgb_to_linear(rgb)
        xyz = torch.einsum("ij,njhw->nihw", _matrix(RGB_TO_XYZ, linear), linear)
        xyz = xyz / _matrix(D65_WHITE, xyz).view(1, 3, 1, 1)
        f = _lab_f(xyz)
        fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
        lightness = 116 * fy - 16
        a = 500 * (fx - fy)
        b = 200 * (fy - fz)
        return torch.stack((lightness, a, b), dim=1)


def lab_to_rgb(lab: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """Lab (N, 3, H, W) -> sRGB. With `clamp`, colors outside the sRGB gamut are clipped to [0, 1]."""
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"lab_to_rgb expects (N, 3, H, W), got {tuple(lab.shape)}")
    with torch.autocast(device_type=lab.device.type, enabled=False):
        lab = lab.to(_compute_dtype(lab))
        lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
        fy = (lightness + 16) / 116
        fx = fy + a / 500
        fz = fy - b / 200
        xyz = _lab_f_inverse(torch.stack((fx, fy, fz), dim=1))
        xyz = xyz * _matrix(D65_WHITE, xyz).view(1, 3, 1, 1)
        xyz_to_rgb = torch.linalg.inv(_matrix(RGB_TO_XYZ, xyz))
        linear = torch.einsum("ij,njhw->nihw", xyz_to_rgb, xyz)
        rgb = _linear_to_srgb(linear)
        return rgb.clamp(0, 1) if clamp else rgb


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> network input in [-1, 1]."""
    return lightness / (L_MAX / 2) - 1


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    """Network L in [-1, 1] -> L in [0, 100]."""
    return (l_norm + 1) * (L_MAX / 2)


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab in natural units -> [-1, 1] (the generator's tanh range)."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm: torch.Tensor) -> torch.Tensor:
    """Network ab in [-1, 1] -> natural units."""
    return ab_norm * AB_SCALE


def rgb_to_network(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB batch in [0, 1] -> (L in [-1, 1] as (N, 1, H, W), ab in [-1, 1] as (N, 2, H, W))."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[:, :1]), normalize_ab(lab[:, 1:])


def network_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Network L and ab in [-1, 1] -> sRGB batch in [0, 1], clipped to the gamut."""
    lab = torch.cat((denormalize_l(l_norm.float()), denormalize_ab(ab_norm.float())), dim=1)
    return lab_to_rgb(lab)
