"""Old-photo augmentation: scans' faults put on the network's input L while training.

A model trained on clean digital photos meets film grain, soft focus, faded and crushed tones,
JPEG blocks, dust and scratches in real archives, and reads them as texture to color. Training on
inputs that carry those faults (with the clean photo's ab still the target) teaches it to look
through them. Only L changes; the target ab and the L joined at the output are never touched.

Each fault is drawn per image, independently, with the probability and strength range below
(`FAULTS`); a photo is degraded at all with probability `p` (the `--old-photo` setting). All draws
come from a torch.Generator the trainer saves with its checkpoints, so a resumed run sees the same
inputs. L is in network units ([-1, 1], that is L/50 - 1) on any device; the JPEG step runs on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Fault:
    probability: float      # of this fault, given that the photo is degraded
    low: float              # strength range, uniform
    high: float
    unit: str               # what the strength means (docs/training.md lists these)


FAULTS: dict[str, Fault] = {
    # contrast c: L' = m + c (L - m) around the image's mean m (faded prints, flat scans)
    "fade": Fault(0.5, 0.55, 0.95, "contrast factor"),
    # tone curve: L01' = L01 ** g (under- or over-developed, a scanner's curve)
    "tone": Fault(0.5, 0.7, 1.45, "gamma"),
    # soft focus / motion: Gaussian blur of sigma pixels at the training size
    "blur": Fault(0.4, 0.4, 1.6, "sigma in pixels"),
    # film grain: Gaussian noise of this standard deviation (L/100 units), low-passed per image
    "grain": Fault(0.6, 0.005, 0.035, "noise std in L/100"),
    # JPEG blocking: re-encoded at this quality
    "jpeg": Fault(0.3, 15.0, 60.0, "JPEG quality"),
    # dust: this fraction of pixels hit by bright or dark specks of 1-3 px
    "dust": Fault(0.3, 0.0005, 0.004, "fraction of pixels"),
    # scratches: this many thin vertical lines, bright or dark
    "scratches": Fault(0.2, 1.0, 4.0, "lines"),
}
DEFAULT_PROBABILITY = 0.6


def _uniform(n: int, fault: Fault, generator: torch.Generator) -> torch.Tensor:
    return fault.low + (fault.high - fault.low) * torch.rand(n, generator=generator)


def _chosen(n: int, fault: Fault, degraded: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return degraded & (torch.rand(n, generator=generator) < fault.probability)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """(1, H, W) in [0, 1] -> the same image after a JPEG round trip at `quality` (8-bit gray)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = (image[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    return torch.from_numpy(decoded.copy()).to(image.device, torch.float32)[None] / 255


def degrade_lightness(l_norm: torch.Tensor, *, p: float, generator: torch.Generator) -> torch.Tensor:
    """L (N, 1, H, W) in [-1, 1] -> the same photos with old-photo faults, in [-1, 1] (a new tensor).

    p: probability that a photo is degraded at all; each fault then follows FAULTS.
    """
    n = l_norm.shape[0]
    x = ((l_norm.float() + 1) / 2).clone()                         # L/100 in [0, 1]
    degraded = torch.rand(n, generator=generator) < p
    if not bool(degraded.any()):
        return l_norm.clone()
    device = x.device

    chosen = _chosen(n, FAULTS["fade"], degraded, generator)
    contrast = _uniform(n, FAULTS["fade"], generator)
    if chosen.any():
        factor = torch.where(chosen, contrast, torch.ones(n)).to(device).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = mean + factor * (x - mean)

    chosen = _chosen(n, FAULTS["tone"], degraded, generator)
    gamma = _uniform(n, FAULTS["tone"], generator)
    if chosen.any():
        exponent = torch.where(chosen, gamma, torch.ones(n)).to(device).view(n, 1, 1, 1)
        x = x.clamp(0, 1) ** exponent

    chosen = _chosen(n, FAULTS["blur"], degraded, generator)
    sigmas = _uniform(n, FAULTS["blur"], generator)
    for index in chosen.nonzero().flatten().tolist():
        x[index:index + 1] = _blur(x[index:index + 1], float(sigmas[index]))

    chosen = _chosen(n, FAULTS["grain"], degraded, generator)
    strength = _uniform(n, FAULTS["grain"], generator)
    grain_size = 0.5 + torch.rand(n, generator=generator)         # low-pass sigma: grain of 1-3 px
    if chosen.any():
        noise = torch.randn(x.shape, generator=generator).to(device)
        for index in chosen.nonzero().flatten().tolist():
            smooth = _blur(noise[index:index + 1], float(grain_size[index]))
            smooth = smooth / smooth.std().clamp_min(1e-6)
            x[index:index + 1] = x[index:index + 1] + float(strength[index]) * smooth

    chosen = _chosen(n, FAULTS["dust"], degraded, generator)
    amount = _uniform(n, FAULTS["dust"], generator)
    if chosen.any():
        height, width = x.shape[-2:]
        for index in chosen.nonzero().flatten().tolist():
            specks = max(1, int(float(amount[index]) * height * width))
            rows = torch.randint(0, height, (specks,), generator=generator)
            cols = torch.randint(0, width, (specks,), generator=generator)
            bright = torch.rand(specks, generator=generator) < 0.5
            big = bool(torch.rand(1, generator=generator) < 0.5)   # specks of 1 or 3 px in this photo
            for value, which in ((0.95, bright), (0.05, ~bright)):
                mask = torch.zeros(1, 1, height, width)
                mask[0, 0, rows[which], cols[which]] = 1.0
                if big:
                    mask = F.max_pool2d(mask, 3, stride=1, padding=1)
                x[index:index + 1] = torch.where(mask.to(device) > 0, torch.tensor(value, device=device),
                                                 x[index:index + 1])

    chosen = _chosen(n, FAULTS["scratches"], degraded, generator)
    lines = _uniform(n, FAULTS["scratches"], generator)
    if chosen.any():
        width = x.shape[-1]
        for index in chosen.nonzero().flatten().tolist():
            for _ in range(int(round(float(lines[index])))):
                col = int(torch.randint(0, width, (1,), generator=generator))
                bright = bool(torch.rand(1, generator=generator) < 0.5)
                x[index, :, :, col] = 0.95 if bright else 0.05

    chosen = _chosen(n, FAULTS["jpeg"], degraded, generator)
    qualities = _uniform(n, FAULTS["jpeg"], generator)
    for index in chosen.nonzero().flatten().tolist():
        x[index] = _jpeg(x[index], int(qualities[index]))

    out = x.clamp(0, 1) * 2 - 1
    # Photos not drawn for degradation stay bit for bit as they were.
    keep = (~degraded).to(device).view(n, 1, 1, 1)
    return torch.where(keep, l_norm.float(), out).to(l_norm.dtype)
